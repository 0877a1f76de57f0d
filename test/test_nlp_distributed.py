"""torchrun on the CPU: two gloo processes (DDP and FSDP) train to the same weights as one process that
accumulates the same two micro-batches. FSDP is marked slow only to keep the default run short (about a minute
each on this shared machine); it passes the same check."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from koba_ros.nlp.checkpoint import load_checkpoint
from koba_ros.nlp.trainer import TrainConfig, train

TEXT = "pick up the red cube and put it in the bottom right box. " * 80


def config(tmp_path, name, **overrides) -> dict:
    (tmp_path / "train.txt").write_text(TEXT)
    data = dict(model=dict(d_model=32, n_layers=2, n_heads=2, max_len=32), train_data=str(tmp_path / "train.txt"),
                seq_len=32, batch_size=4, steps=3, lr=3e-3, warmup=1, eval_every=3, eval_batches=1, ckpt_every=3,
                out=str(tmp_path / name), progress=False, device="cpu")
    data.update(overrides)
    return data


@pytest.mark.parametrize("parallel", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_gloo_ranks_match_single_process_accumulation(tmp_path, parallel):
    single = train(TrainConfig.from_dict(config(tmp_path, "single", grad_accum=2)))
    path = tmp_path / f"{parallel}.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, parallel, parallel=parallel)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["world_size"] == 2 for s in summaries)
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, optim, meta = load_checkpoint(tmp_path / parallel / "checkpoint")
    assert meta["step"] == 3 and optim["state"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-5), key
    assert abs(summaries[0]["loss"] - single["loss"]) < 1e-3
