"""Which dtype a run computes in, and fp16's dynamic loss scaling.

bf16 has fp32's 8-bit exponent, so gradients in it neither overflow nor underflow where fp32's would not. fp16 (for
GPUs without fast bf16: V100, T4, ...) has a 5-bit exponent: gradients under 2^-24 flush to zero. Loss scaling
(Micikevicius et al. 2018, "Mixed Precision Training", §3.2) multiplies the loss by S before backward, so every
gradient is S times larger while in fp16, and divides the fp32 gradients by S before the update:

    g = (1/S) · ∇_θ (S · L),        θ ← AdamW(θ, g)

The paper keeps S constant; by default S is chosen dynamically instead (torch.amp.GradScaler keeps the books): a
step whose gradients overflow (inf or NaN after unscaling) is skipped and S halves; after 2000 clean steps S doubles.
A constant S (TrainConfig.loss_scale > 0) skips overflowing steps too but never changes. A run whose gradients
overflow step after step no longer trains at all; `LossScaler` stops it with one line instead of skipping forever.
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError

OVERFLOW_PATIENCE = 20  # skipped steps in a row before the run stops: S has fallen 2^20 by then
# A loss scale S from 2^-126 to 2^126: float32 holds S and 1/S (GradScaler keeps S and unscales by 1/S in float32)
# as normal numbers. 1e39 is inf in float32, 1e-50 is 0 and 1/S inf.
SCALE_RANGE = (torch.finfo(torch.float32).tiny, 1 / torch.finfo(torch.float32).tiny)


def usable_scale(value) -> bool:
    """Whether `value` is a loss scale float32 can hold, with its inverse (SCALE_RANGE)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        SCALE_RANGE[0] <= value <= SCALE_RANGE[1]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a TrainConfig.precision on `device`, or None for plain fp32. `auto` is bf16 on a GPU
    that computes it natively (Ampere and later), fp16 on an older one, fp32 on the CPU."""
    if precision in ("bf16", "bf16_master"):
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "auto" and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return None


class LossScaler:
    """Dynamic loss scaling for fp16 autocast; with `enabled` False every method is the plain fp32/bf16 step.

    Works with DDP (gradients are averaged before they are unscaled, so every rank finds the same overflow) and FSDP2
    (GradScaler reduces the overflow flag of DTensor gradients across the shards)."""

    def __init__(self, enabled: bool, device: torch.device, constant: float = 0.0, patience: int = OVERFLOW_PATIENCE):
        self.enabled, self.patience, self.constant = enabled, patience, constant
        # A constant scale never grows; an overflow's halving is undone in step().
        fixed = {"init_scale": constant, "growth_interval": 2 ** 31 - 1} if constant else {}
        self.scaler = torch.amp.GradScaler(device.type, enabled=enabled, **fixed)
        self.skipped = 0            # steps skipped for overflowing gradients, this run
        self.skipped_in_a_row = 0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss)

    def unscale(self, optimizer) -> None:
        """Divide the gradients by S in place (before clipping, so the clip threshold means unscaled gradients)."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> bool:
        """optimizer.step() unless the gradients overflowed; then update S. True if the weights were updated."""
        if not self.enabled:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        stepped = not self.scaler.get_scale() < before  # GradScaler lowers S exactly when it skipped the step
        if self.constant:
            self.scaler.update(self.constant)
        self.skipped += not stepped
        self.skipped_in_a_row = 0 if stepped else self.skipped_in_a_row + 1
        return stepped

    def check(self, step: int, kept) -> None:
        """Raise if the gradients overflowed on `patience` steps in a row (fp16 cannot represent them). `kept()` says
        what checkpoint is left; called only then (it looks at the disk)."""
        if self.enabled and self.skipped_in_a_row >= self.patience:
            raise KobaError(f"fp16: the gradients overflowed on {self.skipped_in_a_row} steps in a row up to step "
                            f"{step} (loss scale now {self.value:.3g}); stopped ({kept()}); try precision bf16 or fp32")

    @property
    def value(self) -> float | None:
        return self.scaler.get_scale() if self.enabled else None

    def state_dict(self) -> dict:
        """S and its growth tracker, for the checkpoint's meta (JSON): a resume continues with the same scale."""
        return self.scaler.state_dict() if self.enabled else {}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        """A saved state (the checkpoint's state.json "loss_scale"; `source` names it in errors): the scale and its
        growth tracker, refused in one line when damaged (the scale out of SCALE_RANGE, the tracker not a count)."""
        if self.enabled and state and not self.constant:
            scale, tracker = state.get("scale", 1.0), state.get("_growth_tracker", 0)
            if not usable_scale(scale):
                raise KobaError(f"{source}: state.json's loss_scale scale is {scale!r}, not a number from 2^-126 to "
                                "2^126 (damaged)")
            if isinstance(tracker, bool) or not isinstance(tracker, int) or not 0 <= tracker < 2 ** 31:
                raise KobaError(f"{source}: state.json's loss_scale _growth_tracker is {tracker!r}, not a count of "
                                "steps (damaged)")
            # The scale and its growth tracker only: growth and backoff are this run's settings. A constant-scale
            # run saved growth_interval 2^31-1, which would keep a resumed dynamic scale from ever growing.
            # Its tracker counts toward its own interval (a constant run's passes this run's, and GradScaler grows
            # only when tracker + 1 == interval): kept only when the intervals are the same, else 0.
            mine = self.scaler.state_dict()
            kept = {key: state[key] for key in ("scale", "_growth_tracker") if key in state}
            if state.get("growth_interval") != mine["growth_interval"]:
                kept["_growth_tracker"] = 0
            self.scaler.load_state_dict({**mine, **kept})
