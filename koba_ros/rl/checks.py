"""Range checks for the agents' settings (AgentConfig, QConfig, HConfig): a bad value is one KobaError line naming the
field as `with_overrides` spells it (`alpha_h`, `q.gamma`, `h.train_every`), raised when the settings are made, not
steps later inside a run (a train_every of 0 divided by zero at the first update; a NaN alpha_h made every action a
tie)."""
from __future__ import annotations

import math
from numbers import Integral, Real

from koba_ros.errors import KobaError


def whole(owner, prefix: str, *names: str, low: int = 1) -> None:
    """Each field is an int (not a bool, not a float) >= low."""
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise KobaError(f"{prefix}{name} must be a whole number >= {low}, got {value!r}")


def number(owner, prefix: str, *names: str, low: float = 0.0, high: float = math.inf, low_open: bool = False,
           high_open: bool = False) -> None:
    """Each field is a finite real number (not a bool) in the interval from low to high, ends open or closed."""
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or \
                value < low or value > high or (low_open and value == low) or (high_open and value == high):
            span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}" if high < math.inf else \
                f"{'>' if low_open else '>='} {low:g}"
            raise KobaError(f"{prefix}{name} must be a finite number {'in ' if high < math.inf else ''}{span}, "
                            f"got {value!r}")


def flag(owner, prefix: str, *names: str) -> None:
    """Each field is a real bool (0.5 is not a yes)."""
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, bool):
            raise KobaError(f"{prefix}{name} must be true or false, got {value!r}")
