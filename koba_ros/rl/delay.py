"""Reaction-time distributions: how long after seeing an action a person reacts to it.

Used twice: the simulated human draws its delays from one, and the learner's credit assignment weighs earlier steps
by one (Deep TAMER, Warnell et al. 2018, Eq. 2: uniform over 0.2-4 s). Both are "kind:lo:hi[:mode]" strings so that
a node parameter or a CLI flag can name them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from koba_ros.errors import KobaError

SHAPE = 4.0  # gamma shape: a peaked, right-skewed reaction time
MIN_MASS = 1e-6  # least share of the gamma's mass that [lo, hi] must hold: below it the truncation is 0/0


@dataclass(frozen=True)
class Delay:
    """`uniform` on [lo, hi], or `gamma` (shape 4, peaked at `mode`: a right-skewed human reaction time) cut to
    [lo, hi]. Seconds."""
    kind: str = "uniform"
    lo: float = 0.2
    hi: float = 4.0
    mode: float = 0.0     # gamma only; 0 means the middle of [lo, hi]

    def __post_init__(self):
        if self.kind not in ("uniform", "gamma"):
            raise KobaError(f"delay kind must be uniform or gamma, got {self.kind!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and 0.0 <= self.lo < self.hi):
            raise KobaError(f"delay needs 0 <= lo < hi, got lo={self.lo}, hi={self.hi}")
        if not (math.isfinite(self.mode) and 0.0 <= self.mode <= self.hi):
            raise KobaError(f"delay mode must lie in [0, hi], got {self.mode}")
        if self.kind == "gamma":
            mass = float(self._raw_cdf(np.float64(self.hi)) - self._raw_cdf(np.float64(self.lo)))
            if mass < MIN_MASS:
                raise KobaError(f"delay {self}: a gamma peaked at {self.mode or (self.lo + self.hi) / 2:g} s has "
                                f"almost no mass ({mass:.1e}) in [{self.lo:g}, {self.hi:g}]; raise mode or lower lo")

    @classmethod
    def parse(cls, text: str) -> Delay:
        """'uniform:0.2:4.0' or 'gamma:0.2:4.0:0.4' (kind:lo:hi[:mode])."""
        parts = str(text).split(":")
        if len(parts) not in (3, 4):
            raise KobaError(f"delay must look like uniform:0.2:4.0 or gamma:0.2:4.0:0.4, got {text!r}")
        try:
            return cls(parts[0], *(float(p) for p in parts[1:]))
        except ValueError:
            raise KobaError(f"delay must look like uniform:0.2:4.0 or gamma:0.2:4.0:0.4, got {text!r}") from None

    def __str__(self) -> str:
        return f"{self.kind}:{self.lo:g}:{self.hi:g}" + (f":{self.mode:g}" if self.kind == "gamma" else "")

    @property
    def _scale(self) -> float:
        mode = self.mode or (self.lo + self.hi) / 2.0
        return mode / (SHAPE - 1.0)  # gamma mode = (k - 1) * scale

    def _raw_cdf(self, t: np.ndarray) -> np.ndarray:
        if self.kind == "uniform":
            return np.clip((t - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        x = np.maximum(t, 0.0) / self._scale
        return 1.0 - np.exp(-x) * (1.0 + x + x ** 2 / 2.0 + x ** 3 / 6.0)  # gamma(k=4) CDF

    def cdf(self, t) -> np.ndarray:
        """P(delay <= t), truncated to [lo, hi]."""
        t = np.clip(np.asarray(t, dtype=np.float64), self.lo, self.hi)
        a, b = self._raw_cdf(np.float64(self.lo)), self._raw_cdf(np.float64(self.hi))
        return (self._raw_cdf(t) - a) / (b - a)

    def pdf(self, t) -> np.ndarray:
        """Density of the delay (truncated to [lo, hi]); 0 outside."""
        t = np.asarray(t, dtype=np.float64)
        inside = (t >= self.lo) & (t <= self.hi)
        if self.kind == "uniform":
            return np.where(inside, 1.0 / (self.hi - self.lo), 0.0)
        x = np.maximum(t, 0.0) / self._scale
        raw = x ** 3 * np.exp(-x) / (6.0 * self._scale)  # gamma(k=4) density
        a, b = self._raw_cdf(np.float64(self.lo)), self._raw_cdf(np.float64(self.hi))
        return np.where(inside, raw / (b - a), 0.0)

    @cached_property
    def _quantiles(self) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(self.lo, self.hi, 1025)
        return self.cdf(t), t

    def sample(self, rng: np.random.Generator) -> float:
        if self.kind == "uniform":
            return float(rng.uniform(self.lo, self.hi))
        # Inverse CDF (tabulated, 1024 pieces): costs the same however little of the gamma lies in [lo, hi], where
        # rejection sampling would draw ~1/mass times.
        cdf, t = self._quantiles
        return float(np.interp(rng.random(), cdf, t))
