"""torchrun support: DDP (every rank holds the model) or FSDP (parameters sharded, for models that do not fit).

Launch: `torchrun --nproc_per_node 8 -m koba_ros.cli lm train --config FILE` (multi-node: add --nnodes and
--rdzv-endpoint as usual). Without torchrun's environment everything here is a no-op single process.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from koba_ros.errors import KobaError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), torch.device(device)
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), True)
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
        device = f"cuda:{info.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return info, torch.device(device)


def wrap(model: torch.nn.Module, info: DistInfo, mode: str) -> torch.nn.Module:
    if not info.enabled:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=device_ids)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # shard per block so only one block's full weights exist at a time
            fully_shard(block)
        fully_shard(model)
        return model
    raise KobaError(f"parallel must be ddp or fsdp, got {mode!r}")


def no_sync(wrapped: torch.nn.Module, last_micro: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch of an accumulation."""
    if last_micro or not hasattr(wrapped, "no_sync"):
        return contextlib.nullcontext()
    return wrapped.no_sync()


def _options(info: DistInfo, **kw) -> StateDictOptions:
    return StateDictOptions(full_state_dict=info.enabled, cpu_offload=info.enabled, **kw)


def full_state(model, optimizer, info: DistInfo) -> tuple[dict, dict]:
    """Unsharded model and optimizer state (on rank 0; other ranks may get empty dicts). Call on every rank."""
    options = _options(info)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model, optimizer, optim_state: dict) -> None:
    """Full (unsharded) optimizer state from a checkpoint into a plain, DDP or FSDP-sharded model's optimizer."""
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))


def mean(value: float, info: DistInfo, device) -> float:
    """The average of a number over ranks (NCCL needs the tensor on the GPU)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / info.world


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
