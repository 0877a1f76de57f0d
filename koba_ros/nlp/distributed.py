"""torchrun support: DDP (every rank holds the model) or FSDP (parameters, gradients and optimizer state sharded,
for models that do not fit one device). Under FSDP only rank 0 builds and loads the whole model, in host memory; the
other ranks build it on the meta device (no memory), and after sharding each receives its shards from rank 0
(`materialize`), as it receives a resumed optimizer state. The devices hold shards and one block at a time, and one
host holds the whole model once, not once per rank (docs/nlp.md, Session 25; GPU memory not measured here).

Launch: `torchrun --nproc_per_node 8 -m koba_ros.cli lm train --config FILE`; multi-node: the same line on every
node with --nnodes N --node_rank I --master_addr HOST --master_port PORT (docs/nlp.md has the exact lines; tested
with two "nodes" on one host). Without torchrun's environment everything here is a no-op single process.

Multi-node rules kept here: the device comes from LOCAL_RANK (the GPU on this node), never RANK; only rank 0 reads
and writes checkpoints and sends them to the others (nodes need not share a filesystem); a rank that waits longer
than `timeout_s` in a collective (a dead or unreachable node) stops with a KobaError instead of hanging.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from koba_ros.errors import KobaError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    node_rank: int = 0               # torchrun's GROUP_RANK: which node this process runs on
    enabled: bool = False
    object_group: object = None      # a gloo group for Python objects (from_main): host memory, never the GPU

    @property
    def main(self) -> bool:
        return self.rank == 0


LAUNCH = "launch with torchrun, or set RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT beside WORLD_SIZE"


def _env_int(name: str, default: str) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise KobaError(f"distributed: {name}={value!r} is not an integer; {LAUNCH}") from None


def init(device: str, timeout_s: float = 600.0) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes; pick this rank's device (by its rank on this node). A partial
    environment (WORLD_SIZE without RANK, a rank that is not a number) is one line, not a KeyError."""
    world = _env_int("WORLD_SIZE", "1")
    if world <= 1:
        return DistInfo(), torch.device(device)
    env = os.environ
    needed = ("RANK",) if dist.is_initialized() else ("RANK", "MASTER_ADDR", "MASTER_PORT")  # env:// reads these
    if missing := [name for name in needed if name not in env]:
        raise KobaError(f"distributed: WORLD_SIZE is {world} but {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not set; {LAUNCH}")
    info = DistInfo(_env_int("RANK", ""), world, _env_int("LOCAL_RANK", "0"), _env_int("GROUP_RANK", "0"), True)
    if not 0 <= info.rank < world:
        raise KobaError(f"distributed: RANK {info.rank} is not one of 0..{world - 1} (WORLD_SIZE {world}); {LAUNCH}")
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
        device = f"cuda:{info.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    # Under NCCL, broadcast_object_list stages the pickled object on each rank's GPU: a whole checkpoint (weights and
    # both AdamW moments) would need the device memory FSDP is there to save. Objects go through gloo instead.
    info.object_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return info, torch.device(device)


def from_main(obj, info: DistInfo):
    """Rank 0's `obj` on every rank (e.g. the checkpoint only rank 0 has read). Call on every rank."""
    if not info.enabled:
        return obj
    box = [obj if info.main else None]
    dist.broadcast_object_list(box, src=0, group=info.object_group)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# How a dead peer surfaces: gloo raises a plain RuntimeError from inside DDP's backward hook ("Connection closed by
# peer"), a hung one a timeout; NCCL raises DistBackendError. Any other RuntimeError is a real bug and is re-raised.
LOST_PEER = ("connection closed by peer", "connection reset by peer", "timed out", "timeout", "broken pipe",
             "socket closed", "nccl communicator was aborted")


class LostContact(KobaError):
    """Another rank died or stopped answering. The process should end right after reporting it: the broken process
    group's DDP reducer can block forever in its destructor (seen with gloo: a worker hung at exit, after printing
    the error, while its last gradient all-reduce was pending)."""


@contextlib.contextmanager
def lost_ranks_as_errors(info: DistInfo):
    """A collective that fails (a peer's connection closed) or times out (a hung node) becomes one clear line."""
    try:
        yield
    except RuntimeError as exc:
        lost = isinstance(exc, dist.DistError) or any(m in str(exc).lower() for m in LOST_PEER)
        if not (info.enabled and lost):
            raise
        reason = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip()).split(". ")[0][:160]  # drop gloo's [file:line]
        raise LostContact(f"rank {info.rank} (node {info.node_rank}) lost contact with the other ranks: another "
                        f"process or node died or stopped answering ({reason or type(exc).__name__})") from exc


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of this rank's parameter values (its shards under FSDP): equal on all DDP ranks when in sync."""
    h = hashlib.sha256()
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        h.update(local.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def allreduce_in_fp32(state, bucket):
    """DDP communication hook: average a bucket of low-precision (bf16) gradients in fp32 and round once.

    An all-reduce in bf16 rounds every partial sum to 8 bits of mantissa: with 4 gloo ranks 29 % of the averaged
    gradients differed from the correctly rounded mean (test_nlp_distributed.py), and a ring over more GPUs rounds
    more often. Here each rank's share (g / world, exact for a power of two) is summed in fp32, which holds the sum
    of a few bf16 values exactly unless their exponents lie far apart, and the mean is rounded to bf16 once, as FSDP's
    fp32 reduce dtype does. It sends twice the bytes of a bf16 all-reduce."""
    group = state if state is not None else dist.group.WORLD
    buffer = bucket.buffer()
    wide = buffer.to(torch.float32).div_(dist.get_world_size(group))
    future = dist.all_reduce(wide, group=group, async_op=True).get_future()

    def narrow(done):
        buffer.copy_(done.value()[0])
        return buffer

    return future.then(narrow)


def wrap(model: torch.nn.Module, info: DistInfo, mode: str, compute_dtype: torch.dtype | None = None):
    """DDP or FSDP. With `compute_dtype` (precision bf16_master) gradients are averaged in fp32, as in
    Micikevicius et al.'s recipe: DDP through `allreduce_in_fp32`; FSDP keeps its shards in fp32 as the master
    weights the optimizer steps, all-gathers each block's weights in `compute_dtype` to compute, and reduce-scatters
    gradients in fp32 (FSDP2's MixedPrecisionPolicy)."""
    if not info.enabled:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
        ddp = DistributedDataParallel(model, device_ids=device_ids)
        if compute_dtype is not None:
            ddp.register_comm_hook(None, allreduce_in_fp32)
        return ddp
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32 if compute_dtype else None)
        for block in model.blocks:  # shard per block so only one block's full weights exist at a time
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    raise KobaError(f"parallel must be ddp or fsdp, got {mode!r}")


def no_sync(wrapped: torch.nn.Module, last_micro: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch of an accumulation (its no_sync context, read
    by the forward it wraps). FSDP2 reduce-scatters every micro-batch on purpose: skipping it
    (set_requires_gradient_sync(False)) would keep every parameter's full fp32 gradient on each device until the last
    micro-batch, the memory FSDP is there to save; it costs grad_accum times the communication."""
    if last_micro or not hasattr(wrapped, "no_sync"):
        return contextlib.nullcontext()
    return wrapped.no_sync()


def _options(info: DistInfo, **kw) -> StateDictOptions:
    return StateDictOptions(full_state_dict=info.enabled, cpu_offload=info.enabled, **kw)


def full_state(model, optimizer, info: DistInfo, with_optimizer: bool = True) -> tuple[dict, dict | None]:
    """Unsharded model and optimizer state (on rank 0; other ranks may get empty dicts). Call on every rank, with
    the same `with_optimizer` (False: the optimizer's state, twice the fp32 model, is not gathered at all -- keep_best
    saves weights only)."""
    options = _options(info)
    model_state = get_model_state_dict(model, options=options)
    return model_state, get_optimizer_state_dict(model, optimizer, options=options) if with_optimizer else None


def load_optimizer_state(model, optimizer, optim_state: dict, from_rank0: bool = False) -> None:
    """Full (unsharded) optimizer state from a checkpoint into a plain, DDP or FSDP-sharded model's optimizer.
    `from_rank0` (FSDP): only rank 0 has the state (the others pass {}); each rank receives its shards from it."""
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=from_rank0)
    set_optimizer_state_dict(model, optimizer, optim_state, options=options)


def build_on_rank0(build, info: DistInfo) -> torch.nn.Module:
    """`build()` in host memory on rank 0, on the meta device elsewhere: under FSDP only rank 0 ever holds the whole
    model; the others get their shards from it in `materialize`. (Initialisation on the meta device draws nothing
    from the random generator; the training loop seeds every micro-batch itself, so the ranks stay in step.)"""
    if info.main:
        return build()
    with torch.device("meta"):
        return build()


def materialize(model: torch.nn.Module, rank0_state: dict, info: DistInfo, device: torch.device) -> None:
    """After fully_shard: give the ranks built on the meta device real memory and fill every rank's shards from
    rank 0's full state (`rank0_state`, its model.state_dict() before sharding; {} elsewhere), one tensor at a time,
    so no other rank holds the whole model. Buffers left out of the state dict (RoPE's frequencies) are copied from
    rank 0 too: to_empty leaves them uninitialised, and a model computing with such buffers runs without error."""
    if not info.main:
        model.to_empty(device=device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, rank0_state if info.main else {}, options=options)
    extra = ({name: b.detach().cpu() for name, b in model.named_buffers() if name not in rank0_state}
             if info.main else None)
    for name, value in from_main(extra, info).items():
        with torch.no_grad():
            model.get_buffer(name).copy_(value)


def mean(value: float, info: DistInfo, device) -> float:
    """The average of a number over ranks (NCCL needs the tensor on the GPU)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / info.world


def mean_and_any(value: float, flag: bool, info: DistInfo, device) -> tuple[float, bool]:
    """The average of a number over ranks, and whether any rank raised `flag`, in one all-reduce (the training loop's
    per-step loss average also carries a stop request, so every rank stops after the same step)."""
    if not info.enabled:
        return value, flag
    t = torch.tensor([value, float(flag)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t[0].item() / info.world, bool(t[1].item() > 0)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
