"""Pairing an RGB-D camera's colour and depth frames by stamp, and saying which input keeps pairs from forming.

A camera driver publishes each frame's colour and aligned depth as two messages with (nearly) the same stamp; they
reach a subscriber in either order, and either may be dropped. Holding only the last colour frame and pairing it
with each depth frame as it comes fails whenever depth is handled first: at 15 fps every depth frame then meets the
previous colour frame, 67 ms off, and nothing ever pairs. So a few recent frames of each kind wait, and frames pair
when each is the other's nearest in stamp (within the tolerance) and no frame still to come could be nearer. Pairing
an arrival at once with the nearest waiting frame was not enough (session 25's review): at 30 fps, under a 50 ms
tolerance, one lost colour frame paired the next colour with the previous depth, and every later frame stayed one
off. Each kind's frames come in stamp order at least `period` apart (the smallest spacing seen), so a frame still to
come lies at or after the kind's latest stamp plus that period; message_filters' ApproximateTime policy reasons the
same way. Frames of one instant (equal stamps, or closer than half a period) pair as soon as both are there.
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
    latest: dict[str, int] = field(init=False)     # each kind's newest stamp seen, ns
    period: dict[str, int] = field(init=False)     # each kind's smallest spacing seen, ns (0: not known yet)

    def __post_init__(self) -> None:
        self.waiting = {kind: deque(maxlen=self.keep) for kind in KINDS}
        self.latest, self.period = {}, {kind: 0 for kind in KINDS}

    def add(self, kind: str, stamp_ns: int, frame: Any) -> tuple[Any, Any] | None:
        """Offer a colour or depth frame; the newest (colour, depth) pair it lets form, or None."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        stamp_ns = int(stamp_ns)
        if stamp_ns < self.latest.get(kind, stamp_ns):
            # The kind's stamps went back: one frame was stamped ahead of its time (or the clock was reset). Trusting
            # the bad stamp as this kind's latest made the other kind pair with whatever waited, one frame off (for
            # good after a garbage stamp). Start the kind over from this frame; what waits beyond it goes.
            self.waiting[kind] = deque(((s, f) for s, f in self.waiting[kind] if s <= stamp_ns), maxlen=self.keep)
            del self.latest[kind]
            self.period[kind] = 0
        if kind in self.latest and stamp_ns > self.latest[kind]:
            spacing = stamp_ns - self.latest[kind]
            self.period[kind] = min(self.period[kind] or spacing, spacing)
        self.latest[kind] = max(stamp_ns, self.latest.get(kind, stamp_ns))
        self.waiting[kind].append((stamp_ns, frame))
        pair = None
        while (formed := self._settle_one()) is not False:
            pair = formed or pair
        return pair

    def _settle_one(self):
        """Settle the oldest frame that can be: pair it (the pair), drop it as unpairable (None), or nothing (False)."""
        tolerance = self.tolerance_s * 1e9
        frames = sorted((stamp, kind, i) for kind in KINDS for i, (stamp, _) in enumerate(self.waiting[kind]))
        for stamp, kind, i in frames:
            other = KINDS[1 - KINDS.index(kind)]
            if not self.waiting[other]:
                continue
            gap, j = min((abs(s - stamp), j) for j, (s, _) in enumerate(self.waiting[other]))
            if gap > tolerance:
                self.last_gap_s = gap * 1e-9
                if self._final(stamp, other, int(tolerance) + 1):   # nothing to come can pair it: it goes
                    del self.waiting[kind][i]
                    return None
                continue
            partner_stamp = self.waiting[other][j][0]
            mine = min((abs(s - partner_stamp), k) for k, (s, _) in enumerate(self.waiting[kind]))
            if mine[1] != i or not (self._final(stamp, other, gap) and self._final(partner_stamp, kind, gap)):
                continue
            frame, partner = self.waiting[kind][i][1], self.waiting[other][j][1]
            for _ in range(i + 1):   # the frame and the older ones of its kind: their partners have gone by
                self.waiting[kind].popleft()
            for _ in range(j + 1):
                self.waiting[other].popleft()
            return (frame, partner) if kind == "color" else (partner, frame)
        return False

    def _final(self, stamp: int, other: str, gap: int) -> bool:
        """Whether no `other` frame still to come can lie nearer to `stamp` than `gap`."""
        next_at = self.latest.get(other)
        if next_at is None:
            return False
        return max(0, next_at + self.period[other] - stamp) >= gap

    def clear(self) -> None:
        for frames in self.waiting.values():
            frames.clear()
        self.latest, self.period = {}, {kind: 0 for kind in KINDS}
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
