"""torchrun on the CPU: two gloo processes (DDP and FSDP) train to the same weights as one process that
accumulates the same two micro-batches. FSDP is marked slow only to keep the default run short (about a minute
each on this shared machine); it passes the same check. The single-host DDP case is slow too: the two-node test
below checks the same equality over four ranks, plus node ranks, resume and who writes files.

Multi-node: two torchrun agents on this host act as two nodes (static rendezvous on a free loopback port), each
in its own working folder with a relative `out`, so the nodes share no output folder, as on a cluster without a
shared filesystem. A node killed mid-run (every process of it, as when a machine dies) must make the other stop with
the one-line "lost contact" error, and a node that stops answering (SIGSTOP) must end in it after dist_timeout."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from koba_ros.nlp.checkpoint import load_checkpoint, load_model_state, recorded_config
from koba_ros.nlp.trainer import TrainConfig, train

TEXT = "pick up the red cube and put it in the bottom right box. " * 80


def config(tmp_path, name, **overrides) -> dict:
    (tmp_path / "train.txt").write_text(TEXT)
    data = dict(model=dict(d_model=32, n_layers=2, n_heads=2, max_len=32), train_data=str(tmp_path / "train.txt"),
                seq_len=32, batch_size=4, steps=3, lr=3e-3, warmup=1, eval_every=3, eval_batches=1, ckpt_every=3,
                out=str(tmp_path / name), progress=False, device="cpu")
    data.update(overrides)
    return data


REPO = Path(__file__).resolve().parents[1]
# faulthandler: a rank that aborts in C++ also prints where its Python code was (or "<no Python frame>": at exit)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
_ELASTIC_LOG = re.compile(r"^[WIE]\d{4} .*torch/distributed/elastic")


def rank_errors(proc: subprocess.CompletedProcess) -> str:
    """What a failed torchrun's ranks said, for the assertion message: how many printed their result (a crash after
    that is one at exit), then their stderr. torchrun's own summary comes last and only names the signal, so a
    rank's error (a Python traceback, or a C++ abort's "terminate called ...") is kept from the start, and torchrun's
    log lines are dropped."""
    printed = sum(line.startswith("{") for line in proc.stdout.splitlines())
    text = "\n".join(line for line in proc.stderr.splitlines() if not _ELASTIC_LOG.match(line))
    text = text if len(text) <= 5000 else f"{text[:4000]}\n...\n{text[-1000:]}"
    return f"ranks that printed a result: {printed}\n{text}"


@pytest.mark.slow
@pytest.mark.parametrize("parallel,loss_chunk,recompute,dropout,accum", [
    ("ddp", 0, False, 0.0, 1), ("fsdp", 0, False, 0.0, 1), ("ddp", 24, False, 0.0, 1), ("fsdp", 24, False, 0.0, 1),
    ("ddp", 0, True, 0.0, 1), ("fsdp", 0, True, 0.0, 1), ("ddp", 0, False, 0.2, 1), ("fsdp", 0, False, 0.0, 2)])
def test_two_gloo_ranks_match_single_process_accumulation(tmp_path, parallel, loss_chunk, recompute, dropout, accum):
    """With loss_chunk the ranks compute the loss and its gradients chunk by chunk in the forward pass (24 rows
    does not divide a micro-batch's 128); the reference stays the plain F.cross_entropy, so the check also says the
    chunked gradients reach DDP's all-reduce and FSDP's reduce-scatter like autograd's own. With recompute
    (activation_checkpointing) the blocks run again in backward, under DDP's hooks and FSDP's per-block unsharding.
    With dropout each micro-batch draws its own masks (data.micro_seed; before session 23 both ranks drew rank 0's)."""
    single = config(tmp_path, "single", grad_accum=2 * accum)
    single["model"]["dropout"] = dropout
    single = train(TrainConfig.from_dict(single))
    path = tmp_path / f"{parallel}.yaml"
    # accum 2: each rank accumulates two micro-batches (FSDP reduce-scatters each, DDP all-reduces the second)
    distributed = config(tmp_path, parallel, parallel=parallel, activation_checkpointing=recompute, grad_accum=accum)
    distributed["model"].update(loss_chunk=loss_chunk, dropout=dropout)
    path.write_text(yaml.safe_dump(distributed))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, rank_errors(proc)
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["world_size"] == 2 for s in summaries)
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, optim, meta = load_checkpoint(tmp_path / parallel / "checkpoint")
    assert meta["step"] == 3 and optim["state"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-5), key
    assert abs(summaries[0]["loss"] - single["loss"]) < 1e-3


@pytest.mark.slow
def test_two_gloo_ranks_keep_bf16_master_weights_in_sync(tmp_path):
    """precision bf16_master under DDP: the ranks average bf16 gradients (in fp32: allreduce_in_fp32) and step
    identical fp32 masters."""
    path = tmp_path / "master.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, "master", precision="bf16_master")))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, rank_errors(proc)
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [s["rank"] for s in sorted(summaries, key=lambda s: s["rank"])] == [0, 1]
    assert len({s["parameter_digest"] for s in summaries}) == 1 and summaries[0]["precision"].startswith("bf16 w")
    state, optim, meta = load_checkpoint(tmp_path / "master" / "checkpoint")
    assert meta["step"] == 3 and optim["param_groups"][0]["kind"] == "master_weight_adamw"
    assert all(v.dtype == torch.float32 for v in state.values())


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_ranks_start_from_a_source_and_mask_documents_like_one_process(tmp_path, parallel):
    """init_from under torchrun: rank 0 reads the source's weights and sends them; document_mask's per-batch masks
    and turn-over dropout's per-token document ids (model.turnover_p, session 14) pass through DDP's and FSDP's
    forward; keep_best gathers the weights on every rank (FSDP's shards) and rank 0 writes them. Two ranks must end
    where one process accumulating the same micro-batches does, and not where a run from a fresh init does."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, line in enumerate(("open the gripper.", "move left five centimeters.", "put the cube in the box.")):
        (corpus / f"{i}.txt").write_text((line + " ") * (20 + 5 * i))
    train(TrainConfig.from_dict(config(tmp_path, "source", steps=6, ckpt_every=6, eval_every=6)))
    tuned = dict(train_data=str(corpus), init_from=str(tmp_path / "source"), document_mask=True, keep_best=True,
                 model=dict(d_model=32, n_layers=2, n_heads=2, max_len=32, turnover_p=0.5))
    single = train(TrainConfig.from_dict({**config(tmp_path, "single", grad_accum=2, **tuned)}))
    fresh = train(TrainConfig.from_dict({**config(tmp_path, "fresh", grad_accum=2, train_data=str(corpus),
                                                  document_mask=True)}))
    ranks = torchrun_train(tmp_path / "ddp.yaml", config(tmp_path, "ddp", parallel=parallel, **tuned))
    assert [r["init_from"] for r in ranks] == [str(tmp_path / "source")] * 2
    assert recorded_config(tmp_path / "ddp" / "checkpoint")["model"]["turnover_p"] == 0.5
    assert parallel == "fsdp" or len({r["parameter_digest"] for r in ranks}) == 1  # FSDP ranks hold shards
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "ddp" / "checkpoint")
    best, _, meta = load_checkpoint(tmp_path / "ddp" / "best")  # evaluated once, at the last step: those weights
    assert meta["step"] == 3 and all(torch.equal(best[k], b[k]) for k in b)
    c, _, _ = load_checkpoint(tmp_path / "fresh" / "checkpoint")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 2e-5
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-2
    assert abs(ranks[0]["loss"] - single["loss"]) < 1e-3 and abs(fresh["loss"] - single["loss"]) > 1e-2


@pytest.mark.slow
def test_two_gloo_ranks_train_lora_adapters_like_one_process(tmp_path):
    """LoRA under DDP: only the adapters take gradients (DDP reduces those, the frozen base needs none); two ranks
    end where one process accumulating the same micro-batches does, merged weights and adapters alike."""
    train(TrainConfig.from_dict(config(tmp_path, "source", steps=6, ckpt_every=6, eval_every=6)))
    lora = dict(init_from=str(tmp_path / "source"), lora_rank=4, lr=1e-2)
    train(TrainConfig.from_dict(config(tmp_path, "single", grad_accum=2, **lora)))
    ranks = torchrun_train(tmp_path / "lora.yaml", config(tmp_path, "ddp", **lora))
    assert len({r["parameter_digest"] for r in ranks}) == 1 and ranks[0]["trainable_parameters"] < 20000
    for name in ("model.safetensors", "lora.safetensors"):
        a = load_model_state(tmp_path / "single" / "checkpoint" / name)
        b = load_model_state(tmp_path / "ddp" / "checkpoint" / name)
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 2e-5, name


FP32_REDUCE_SCRIPT = r"""
import json, os, torch, torch.distributed as dist
from torch import nn
from koba_ros.nlp.distributed import allreduce_in_fp32
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
n = 1 << 14
def local_gradient(r):  # bf16 values over four decades, different on every rank
    g = torch.Generator().manual_seed(r)
    return (torch.randn(n, generator=g) * 10 ** (torch.rand(n, generator=g) * 4 - 2)).bfloat16()
exact = torch.stack([local_gradient(r).double() for r in range(world)]).mean(0).bfloat16()
class Weighted(nn.Module):  # d loss / d w = this rank's local_gradient, exactly
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.bfloat16))
    def forward(self, g):
        return (self.w * g).sum()
mismatches = {}
for hooked in (False, True):
    model = nn.parallel.DistributedDataParallel(Weighted())
    if hooked:
        model.register_comm_hook(None, allreduce_in_fp32)
    model(local_gradient(rank)).backward()
    mismatches[str(hooked)] = int((model.module.w.grad != exact).sum())
os.write(1, (json.dumps({"rank": rank, "n": n, "mismatches": mismatches}) + "\n").encode())  # one write
os._exit(0)  # gloo with live DDP reducers can abort in teardown ("terminate called"); the result is printed
"""


@pytest.mark.slow
def test_fp32_reduce_hook_gives_the_correctly_rounded_mean_of_bf16_gradients(tmp_path):
    """DDP + bf16_master averages gradients through distributed.allreduce_in_fp32: on four gloo ranks every element
    equals the bf16 rounding of the exact mean, where a plain bf16 all-reduce misses many."""
    script = tmp_path / "fp32_reduce.py"
    script.write_text(FP32_REDUCE_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
                           str(script)], capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, rank_errors(proc)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 4
    for r in results:
        assert r["mismatches"]["True"] == 0, r
        assert r["mismatches"]["False"] > r["n"] // 20, r  # measured: 4697 of 16384


def torchrun_train(path: Path, config_data: dict) -> list[dict]:
    """Two gloo ranks on this host train `config_data`; their JSON summaries by rank."""
    path.write_text(yaml.safe_dump(config_data))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, rank_errors(proc)
    return sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                  key=lambda s: s["rank"])


def losses(out: Path) -> list[float]:
    return [float(row.split(",")[3]) for row in (out / "metrics.csv").read_text().splitlines()[1:]]


@pytest.mark.slow
def test_fsdp_bf16_master_trains_like_the_flat_master_and_resumes_either_way(tmp_path):
    """precision bf16_master under FSDP is FSDP's mixed precision: the fp32 shards are the master weights, blocks are
    all-gathered in bf16 to compute, gradients reduce-scattered in fp32. Against one process with the flat master
    accumulating the same two micro-batches it is close, not equal (there the micro-batches' gradients add up in
    bf16). Its checkpoint holds fp32 weights and torch's per-parameter AdamW state, which one process resumes
    (converted to the flat layout), and FSDP resumes a one-process checkpoint (converted back)."""
    master = dict(precision="bf16_master", steps=6, ckpt_every=3, eval_every=3, schedule="wso")  # lr: not by steps
    single = train(TrainConfig.from_dict(config(tmp_path, "single", grad_accum=2, **master)))
    reference = losses(tmp_path / "single")
    assert reference[-1] < reference[0] - 0.5  # it trains: a fall far above the tolerances below

    ranks = torchrun_train(tmp_path / "fsdp.yaml", config(tmp_path, "fsdp", parallel="fsdp", **{**master, "steps": 3}))
    assert [s["precision"] for s in ranks] == ["bf16 weights, fp32 master AdamW (FSDP mixed precision)"] * 2
    fsdp = losses(tmp_path / "fsdp")
    assert max(abs(a - b) for a, b in zip(fsdp, reference[:3], strict=True)) < 5e-3
    state, optim, meta = load_checkpoint(tmp_path / "fsdp" / "checkpoint")
    assert meta["step"] == 3 and "blocks.0.ffn.fc.weight" in optim["state"]  # torch's layout, by parameter name
    weights = state["blocks.0.ffn.fc.weight"]
    assert weights.dtype == torch.float32 and not torch.equal(weights, weights.bfloat16().float())  # the master

    resumed = train(TrainConfig.from_dict(config(tmp_path, "fsdp", grad_accum=2, **master)))  # one process
    assert resumed["precision"] == "bf16 weights, fp32 master AdamW" and abs(resumed["loss"] - single["loss"]) < 5e-3
    train(TrainConfig.from_dict(config(tmp_path, "flat", grad_accum=2, **{**master, "steps": 3})))
    ranks = torchrun_train(tmp_path / "flat.yaml", config(tmp_path, "flat", parallel="fsdp", **master))
    assert abs(ranks[0]["loss"] - single["loss"]) < 5e-3 and len(losses(tmp_path / "flat")) == 6


@pytest.mark.slow
def test_fsdp_builds_the_model_on_rank0_alone_and_resumes_with_rope_and_alone_buffers(tmp_path):
    """Under FSDP only rank 0 builds and loads the whole model; rank 1 builds it on the meta device and receives its
    shards, its persistent buffers (ALONE's codebooks) and the buffers the state dict leaves out (RoPE's
    frequencies: left uninitialised by to_empty, they would skew rank 1's forward silently). A run from a source
    model (init_from) stops at step 2 and resumes (the optimizer state too comes from rank 0 alone), and ends where
    one process accumulating the same two micro-batches does."""
    model = dict(d_model=32, n_layers=2, n_heads=2, max_len=32, positions="rope", embedding="alone")
    run = dict(model=model, steps=4, ckpt_every=2, eval_every=2)
    train(TrainConfig.from_dict(config(tmp_path, "source", **run)))
    run["init_from"] = str(tmp_path / "source")
    single = train(TrainConfig.from_dict(config(tmp_path, "single", grad_accum=2, **run)))
    first = torchrun_train(tmp_path / "fsdp.yaml", config(tmp_path, "fsdp", parallel="fsdp", **{**run, "steps": 2}))
    assert [r["built_on"] for r in first] == ["cpu", "meta"]
    ranks = torchrun_train(tmp_path / "fsdp.yaml", config(tmp_path, "fsdp", parallel="fsdp", **run))
    assert [r["steps"] for r in ranks] == [4, 4] and abs(ranks[0]["loss"] - single["loss"]) < 1e-3
    assert losses(tmp_path / "single")[-1] < losses(tmp_path / "single")[0] - 0.1  # it trains
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "fsdp" / "checkpoint")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 5e-5
    assert "positions.inv_freq" not in a  # the RoPE buffer travels apart from the state dict
    # an optimizer state only rank 0 reads and refuses: both ranks stop with its error, neither waits for the other
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config(tmp_path, "fsdp", parallel="fsdp",
                                                             **{**run, "steps": 6, "precision": "bf16_master"})))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "koba_ros.cli", "lm", "train", "--config", str(tmp_path / "bad.yaml"), "--json"],
                          capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode != 0 and proc.stderr.count("saved with precision other than bf16_master") == 2, proc.stderr


FP16_OVERFLOW_SCRIPT = r"""
import os, sys, yaml
from koba_ros.nlp import trainer
from koba_ros.nlp.mixed_precision import LossScaler
from koba_ros.nlp.trainer import TrainConfig
from koba_ros.cli import main
from test.test_nlp_mixed_precision import overflowing_lm
rank = int(os.environ["RANK"])
config = TrainConfig.from_dict(yaml.safe_load(open(sys.argv[1])))
if config.parallel == "ddp":  # rank 1's step-1 gradients overflow before the all-reduce carries them to rank 0
    trainer.TransformerLM = overflowing_lm(lambda n: rank == 1 and n == 2)
else:  # after the reduce-scatter: only rank 1's shard of one weight overflows; rank 0's gradients are finite
    unscale, calls = LossScaler.unscale, [0]
    def unscale_with_one_bad_shard(self, optimizer):
        calls[0] += 1
        if rank == 1 and calls[0] == 2:
            grad = optimizer.param_groups[0]["params"][0].grad
            getattr(grad, "_local_tensor", grad).view(-1)[0] = float("inf")
        unscale(self, optimizer)
    LossScaler.unscale = unscale_with_one_bad_shard
sys.exit(main(["lm", "train", "--config", sys.argv[1], "--json"]))  # the command's own way out, as a user's run
"""


# FSDP stays in the default run: that a shard's overflow reaches every rank is torch's GradScaler's doing with DTensor
# gradients, which a torch upgrade could change.
@pytest.mark.parametrize("parallel", [pytest.param("ddp", marks=pytest.mark.slow), "fsdp"])
def test_two_gloo_ranks_in_fp16_skip_an_overflowing_step_together_like_one_process(tmp_path, parallel):
    """precision fp16 with two ranks: an overflow on one rank (DDP: in its gradients before they are averaged;
    FSDP: in its shard alone, after the reduce-scatter) makes both ranks skip that step and halve the loss scale, and
    they end where one process does that accumulates the same micro-batches and skips the same step."""
    from koba_ros.nlp import trainer
    from test.test_nlp_mixed_precision import overflowing_lm

    trainer_lm = trainer.TransformerLM
    trainer.TransformerLM = overflowing_lm(lambda n: n == 3)  # step 1's first micro-batch
    try:
        single = train(TrainConfig.from_dict(config(tmp_path, "single", grad_accum=2, precision="fp16")))
    finally:
        trainer.TransformerLM = trainer_lm
    assert single["skipped_steps"] == 1
    path, script = tmp_path / f"{parallel}.yaml", tmp_path / "fp16_overflow.py"
    path.write_text(yaml.safe_dump(config(tmp_path, parallel, parallel=parallel, precision="fp16")))
    script.write_text(FP16_OVERFLOW_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(path)], capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, rank_errors(proc)
    ranks = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    assert [(r["skipped_steps"], r["loss_scale"]) for r in ranks] == [(1, 2.0 ** 15)] * 2
    assert ranks[0]["precision"] == "fp16 autocast, dynamic loss scaling"
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, _, meta = load_checkpoint(tmp_path / parallel / "checkpoint")
    assert meta["loss_scale"]["scale"] == 2.0 ** 15
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_after_the_same_step_with_a_checkpoint(tmp_path):
    """A scheduler preempting the job signals torchrun, which forwards SIGTERM to its workers; they may see it in
    different steps, but agree on it in the step's loss all-reduce, so both leave after the same step and take part
    in one checkpoint; the resumed run then ends with the weights of a run never stopped."""
    import signal
    import time

    data = config(tmp_path, "stopped", steps=400, schedule="wso", ckpt_every=1000, eval_every=1000)
    path = tmp_path / "stopped.yaml"
    path.write_text(yaml.safe_dump(data))
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    metrics, deadline = tmp_path / "stopped" / "metrics.csv", time.monotonic() + 180
    while time.monotonic() < deadline and agent.poll() is None and \
            (not metrics.is_file() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.02)
    agent.send_signal(signal.SIGTERM)  # the agent only, as a scheduler would
    out, err = agent.communicate(timeout=120)
    ranks = sorted((json.loads(line) for line in out.splitlines() if line.startswith("{")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1], err[-2000:]
    assert {r["stopped_by"] for r in ranks} == {"SIGTERM"} and ranks[0]["steps"] == ranks[1]["steps"] < 400
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]
    _, _, meta = load_checkpoint(tmp_path / "stopped" / "checkpoint")
    assert meta["step"] == ranks[0]["steps"]

    resumed = torchrun_train(path, data)
    straight = torchrun_train(tmp_path / "straight.yaml", {**data, "out": str(tmp_path / "straight")})
    assert resumed[0]["steps"] == straight[0]["steps"] == 400
    assert resumed[0]["parameter_digest"] == straight[0]["parameter_digest"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(tmp_path, config_path, procs_per_node: int, *args, c10d: bool = False) -> list[subprocess.Popen]:
    """One torchrun agent per "node", each in tmp_path/nodeN; the same command lines as on a real cluster (static
    rendezvous with fixed node ranks, or c10d, where node ranks follow the order of joining)."""
    port, nodes = free_port(), []
    for node in (0, 1):
        (tmp_path / f"node{node}").mkdir(exist_ok=True)
        rendezvous = (["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "koba"] if c10d
                      else ["--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port)])
        nodes.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", str(procs_per_node),
             *rendezvous, "-m", "koba_ros.cli", "lm", "train", "--config", str(config_path), "--json", *args],
            cwd=tmp_path / f"node{node}", env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return nodes


def finish(nodes, timeout=300) -> list[dict]:
    """Both nodes' per-rank JSON summaries, each with "folder" (which launch printed it); fails with the first
    failing node's stderr."""
    summaries = []
    for folder, node in enumerate(nodes):
        out, err = node.communicate(timeout=timeout)
        assert node.returncode == 0, err[-2000:]
        summaries += [{**json.loads(line), "folder": folder} for line in out.splitlines() if line.startswith("{")]
    return summaries


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (torchrun's workers run in their own sessions, so a process group is not enough)."""
    def parent(p):
        try:
            return int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return -1
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent(int(p)) == pid]
    return [pid] + [d for c in children for d in process_tree(c)]


def signal_tree(pids: list[int], sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.mark.timeout(900)
@pytest.mark.parametrize("per_node", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_two_nodes_train_resume_and_only_rank0_writes(tmp_path, per_node):
    """2 nodes x per_node ranks: node and local ranks, identical parameters everywhere, the checkpoint and curves
    written once (node 0 only), and a resume on both nodes (node 1 has no copy of the checkpoint: rank 0 sends it)
    that ends at the weights of one process accumulating the same micro-batches and resuming the same way.
    One rank per node in the default run (about 35 s); two per node (about 55 s) only adds local ranks 1."""
    world = 2 * per_node
    path = tmp_path / "two_nodes.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, "unused", out="run")))
    first = finish(launch_two_nodes(tmp_path, path, per_node))
    assert sorted((s["rank"], s["node_rank"], s["local_rank"]) for s in first) == [
        (node * per_node + local, node, local) for node in (0, 1) for local in range(per_node)]
    assert all(s["world_size"] == world and s["steps"] == 3 for s in first)
    assert len({s["parameter_digest"] for s in first}) == 1
    node0, node1 = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    assert (node0 / "checkpoint" / "model.safetensors").is_file() and (node0 / "metrics.csv").is_file()
    assert not node1.exists()  # only rank 0 writes

    resumed = finish(launch_two_nodes(tmp_path, path, per_node, "--steps", "6"))
    assert all(s["steps"] == 6 for s in resumed) and len({s["parameter_digest"] for s in resumed}) == 1
    assert resumed[0]["parameter_digest"] != first[0]["parameter_digest"]
    assert not node1.exists()
    reference = config(tmp_path, "single", grad_accum=world)
    train(TrainConfig.from_dict(reference))
    train(TrainConfig.from_dict({**reference, "steps": 6}))
    a, _, _ = load_checkpoint(tmp_path / "single" / "checkpoint")
    b, optim, meta = load_checkpoint(node0 / "checkpoint")
    assert meta["step"] == 6 and optim["state"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-5), key
    rows = (node0 / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_nodes_with_c10d_rendezvous(tmp_path):
    """The elastic launch line (no --node_rank): whichever node joins first is node 0, and only its folder is
    written."""
    path = tmp_path / "c10d.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, "unused", out="run")))
    summaries = finish(launch_two_nodes(tmp_path, path, 1, c10d=True))
    assert sorted((s["rank"], s["node_rank"]) for s in summaries) == [(0, 0), (1, 1)]
    assert all(s["world_size"] == 2 for s in summaries) and len({s["parameter_digest"] for s in summaries}) == 1
    writer = next(s["folder"] for s in summaries if s["rank"] == 0)
    assert (tmp_path / f"node{writer}" / "run" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / f"node{1 - writer}" / "run").exists()


def kill_one_node(tmp_path, victim: int, sig, dist_timeout: float) -> tuple[subprocess.Popen, str]:
    """Start a long 2-node run, wait for training steps on node 0, then send `sig` to every process of node
    `victim`; returns the other node's finished agent and its stderr (killing the victim's processes after)."""
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, "unused", out="run", steps=100_000, eval_every=100_000,
                                          ckpt_every=100_000, dist_timeout=dist_timeout)))
    nodes = launch_two_nodes(tmp_path, path, 1)
    metrics = tmp_path / "node0" / "run" / "metrics.csv"
    victims = []
    try:
        deadline = time.monotonic() + 300
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 3):
            assert time.monotonic() < deadline and all(n.poll() is None for n in nodes), "2-node run did not train"
            time.sleep(0.5)
        victims = process_tree(nodes[victim].pid)
        signal_tree(victims, sig)
        other = nodes[1 - victim]
        _, err = other.communicate(timeout=dist_timeout + 240)  # a hang fails here
        return other, err
    finally:  # leave nothing running; a pid already gone is never signalled again (it may have been reused)
        if sig != signal.SIGKILL:
            signal_tree(victims, signal.SIGKILL)
        for node in nodes:
            if node.poll() is None:
                signal_tree(process_tree(node.pid), signal.SIGKILL)
            node.wait(timeout=60)


@pytest.mark.timeout(600)
def test_dead_node_stops_the_other_with_a_clear_error(tmp_path):
    other, err = kill_one_node(tmp_path, victim=1, sig=signal.SIGKILL, dist_timeout=120)
    assert other.returncode != 0
    assert "koba lm: error: rank 0 (node 0) lost contact with the other ranks" in err, err[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("victim,sig", [(0, signal.SIGKILL), (1, signal.SIGSTOP)], ids=["master_dies", "node_hangs"])
def test_other_node_failures_end_in_a_clear_error(tmp_path, victim, sig):
    """The master node (which hosts the rendezvous store) dying, and a node that stops answering: the second only
    ends through dist_timeout (gloo sees no closed connection), so a short one keeps the test short."""
    other, err = kill_one_node(tmp_path, victim, sig, dist_timeout=30)
    survivor = 1 - victim
    assert other.returncode != 0
    assert f"(node {survivor}) lost contact with the other ranks" in err, err[-2000:]


def test_fsdp2_reduces_every_micro_batch_and_ddp_only_the_last():
    """DDP's no_sync context skips the all-reduce until the last micro-batch. FSDP2 is left reducing every
    micro-batch: its switch (set_requires_gradient_sync(False)) would keep each parameter's full fp32 gradient on every
    device until then (a review in session 24 found that a first version of this session turned it on)."""
    from koba_ros.nlp import distributed

    class FSDP2Like(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = []

        def set_requires_gradient_sync(self, value):
            self.calls.append(value)

    fsdp = FSDP2Like()
    for a in range(3):
        with distributed.no_sync(fsdp, a == 2):
            pass
    assert fsdp.calls == []

    class DDPLike(torch.nn.Module):
        entered = 0

        def no_sync(self):
            DDPLike.entered += 1
            return contextlib.nullcontext()

    for a in range(3):
        with distributed.no_sync(DDPLike(), a == 2):
            pass
    assert DDPLike.entered == 2
