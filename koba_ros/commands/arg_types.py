"""argparse types for numbers that must be finite, positive or non-negative: a bad value is argparse's own one-line
usage error at parse time ("argument --noise: must be a finite number >= 0, got 'nan'"), before any work starts."""
from __future__ import annotations

import argparse
import math
import os
import threading


def _number(text: str, kind, test, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and test(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    return _number(text, float, lambda v: True, "a finite number")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0, "a finite number >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a finite number > 0")


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v > 0, "a whole number > 0")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def random_seed(text: str) -> int:
    """A random seed numpy and torch both take: 0 to 2^63 - 1."""
    return _number(text, int, lambda v: 0 <= v < 2 ** 63, "a whole number from 0 to 2^63 - 1")


def timer_seconds(text: str) -> float:
    """Seconds a timer can wait for: 0 to threading.TIMEOUT_MAX (1e10 s overflowed the timer's clock)."""
    return _number(text, float, lambda v: 0 <= v <= threading.TIMEOUT_MAX,
                   f"a number of seconds from 0 to {threading.TIMEOUT_MAX:.0f}")


def max_threads() -> int:
    """The most CPU threads a --threads may ask for: four per CPU (torch.set_num_threads(100000) crashed)."""
    return 4 * (os.cpu_count() or 1)


def thread_count(text: str) -> int:
    """A number of CPU threads: 1 to max_threads()."""
    limit = max_threads()
    return _number(text, int, lambda v: 1 <= v <= limit, f"a whole number of threads from 1 to {limit} (4 per CPU)")
