"""Pairing an RGB-D camera's colour and depth frames by stamp, and saying which input keeps pairs from forming.

A camera driver publishes each frame's colour and aligned depth as two messages with (nearly) the same stamp; they
reach a subscriber in either order, and either may be dropped. Holding only the last colour frame and pairing it
with each depth frame as it comes fails whenever depth is handled first: at 15 fps every depth frame then meets the
previous colour frame, 67 ms off, and nothing ever pairs. So a few recent frames of each kind wait, and each arrival
pairs with the waiting frame of the other kind nearest to it in stamp, within the tolerance. A frame pairs once;
frames older than the one it paired with are dropped (they come in stamp order, so theirs will not come).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

KINDS = ("color", "depth")


@dataclass
class StampPairer:
    tolerance_s: float
    keep: int = 4                        # frames of each kind that wait for their partner
    waiting: dict[str, deque] = field(init=False)
    last_gap_s: float | None = field(init=False, default=None)   # the nearest partner's gap when last none paired

    def __post_init__(self) -> None:
        self.waiting = {kind: deque(maxlen=self.keep) for kind in KINDS}

    def add(self, kind: str, stamp_ns: int, frame: Any) -> tuple[Any, Any] | None:
        """Offer a colour or depth frame; the (colour, depth) pair it completes, or None (it waits)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        partners = self.waiting[KINDS[1 - KINDS.index(kind)]]
        if partners:
            gap_ns, index = min((abs(stamp - stamp_ns), i) for i, (stamp, _) in enumerate(partners))
            if gap_ns <= self.tolerance_s * 1e9:
                partner = partners[index][1]
                for _ in range(index + 1):   # the partner and the frames older than it
                    partners.popleft()
                return (frame, partner) if kind == "color" else (partner, frame)
            self.last_gap_s = gap_ns * 1e-9
        self.waiting[kind].append((stamp_ns, frame))
        return None

    def clear(self) -> None:
        for frames in self.waiting.values():
            frames.clear()
        self.last_gap_s = None


def missing_input(now: float, since: float, wait_s: float, *, depth_at: float | None, color_at: float | None,
                  has_info: bool, paired_at: float | None) -> str | None:
    """Which input has kept frames from being paired and perceived for more than wait_s: "depth" (no depth frames),
    "color" (no colour frames), "info" (no intrinsics yet), "stamps" (both come, never within the tolerance), or None.
    Times are of one monotonic clock; `since` is when the consumer began to listen, the *_at when each last came."""
    def silent(at: float | None) -> bool:
        return now - (since if at is None else at) > wait_s

    if silent(depth_at):
        return "depth"
    if silent(color_at):
        return "color"
    if not has_info and now - since > wait_s:
        return "info"
    if silent(paired_at):
        return "stamps"
    return None
