"""Learning-rate schedules: cosine, linear, warmup-stable-decay (WSD) and warmup-stable-only (WSO).

WSO (Yano et al. 2025, arXiv 2603.16127): linear warmup, then the peak rate until the end, no decay. Decaying
schedules reach a lower pre-training loss but sharper minima; WSO's flatter end point fine-tunes better.
WSD (Hu et al. 2024, MiniCPM): warmup, constant, then a short linear decay over the last `decay_frac` of training.
"""
from __future__ import annotations

import math

from koba_ros.errors import KobaError

SCHEDULES = ("cosine", "linear", "wsd", "wso")


def lr_at(step: int, total: int, peak: float, warmup: int = 0, schedule: str = "cosine", min_lr: float = 0.0,
          decay_frac: float = 0.2) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total`."""
    if schedule not in SCHEDULES:
        raise KobaError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "wso":
        return peak
    if schedule == "wsd":
        decay_start = int(total * (1.0 - decay_frac))
        if step < decay_start:
            return peak
        progress = (step - decay_start) / max(1, total - decay_start)
        return peak - (peak - min_lr) * min(1.0, progress)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return peak - (peak - min_lr) * progress
    return min_lr + 0.5 * (peak - min_lr) * (1.0 + math.cos(math.pi * progress))
