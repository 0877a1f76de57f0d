"""Host memory of FSDP's start: only rank 0 builds the whole model (session 25) against every rank building it
(sessions 11-24), on two gloo ranks on this CPU, in one run of this script.

    cd bench && PYTHONPATH=..:. ../.venv/bin/python lm_fsdp_host_memory.py [--d-model 1024] [--layers 4]

Each arm is a torchrun of two ranks that trains one step of the same model with `parallel: fsdp` through the real
trainer (`koba_ros.nlp.trainer.train`); the "every_rank" arm replaces `distributed.build_on_rank0` with a plain
build, which is what every rank did before. Each rank reports its resident-memory high-water mark above its size
after imports (bench/resident_memory.py). On the CPU "the device" is host memory too, so the shards and the
optimizer state count in both arms; what differs is the whole model that rank 1 built and dropped. Two arms of one
fresh start each, resume not measured. Prints one JSON object with rank 1's ratio, rank0_only over every_rank.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(config_path: str, arm: str) -> None:
    import yaml
    from resident_memory import peak_above_now_mb, status_kb

    from koba_ros.nlp import distributed
    from koba_ros.nlp.trainer import TrainConfig, train

    if arm == "every_rank":  # the behaviour before session 25: each rank builds (and initialises) the whole model
        distributed.build_on_rank0 = lambda build, info: build()
    marks = {}
    materialize = distributed.materialize

    def materialize_and_mark(*args):  # the high-water mark once the model is sharded and filled: the start's peak
        materialize(*args)
        marks["start_mb"] = round(status_kb("VmHWM") / 1024, 1)

    distributed.materialize = materialize_and_mark
    config = TrainConfig.from_dict(yaml.safe_load(Path(config_path).read_text()))
    before = status_kb("VmRSS") / 1024
    summary, peak_mb = peak_above_now_mb(lambda: train(config))
    os.write(1, (json.dumps({"rank": summary["rank"], "built_on": summary["built_on"],
                             "start_peak_mb": round(marks["start_mb"] - before, 1), "run_peak_mb": peak_mb,
                             "parameters": summary["parameters"], "loss": summary["loss"]}) + "\n").encode())


def run_arm(arm: str, folder: Path, d_model: int, layers: int) -> list[dict]:
    import yaml

    text = folder / "train.txt"
    text.write_text("pick up the red cube and put it in the bottom right box. " * 200)
    config = dict(model=dict(d_model=d_model, n_layers=layers, n_heads=max(1, d_model // 64), max_len=32),
                  train_data=str(text), seq_len=16, batch_size=1, steps=1, eval_every=1, eval_batches=1,
                  ckpt_every=1000, out=str(folder / arm), progress=False, device="cpu", parallel="fsdp")
    path = folder / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).resolve()), "--worker", str(path), arm],
                          capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{arm}: torchrun failed:\n{proc.stderr[-3000:]}")
    return sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                  key=lambda r: r["rank"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arms = {arm: run_arm(arm, Path(tmp), args.d_model, args.layers) for arm in ("rank0_only", "every_rank")}
    params = arms["rank0_only"][0]["parameters"]
    out = {"bench": "lm_fsdp_host_memory", "d_model": args.d_model, "layers": args.layers, "parameters": params,
           "fp32_model_mb": round(params * 4 / 2**20, 1), "arms": arms,
           "rank1_start_peak_ratio_rank0_only_over_every_rank":
               round(arms["rank0_only"][1]["start_peak_mb"] / arms["every_rank"][1]["start_peak_mb"], 3),
           "rank1_run_peak_ratio_rank0_only_over_every_rank":
               round(arms["rank0_only"][1]["run_peak_mb"] / arms["every_rank"][1]["run_peak_mb"], 3),
           "same_loss": arms["rank0_only"][0]["loss"] == arms["every_rank"][0]["loss"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
