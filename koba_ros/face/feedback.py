"""Per-frame expression scores and head motion -> discrete feedback events, stamped at the onset.

DQN-TAMER credits a feedback to the steps the person saw just before reacting, so the stamp
must be when the expression began, not when we became sure of it. A smile is one event:
the smoothed score must rise above `on` and stay past `min_duration_s`, and the detector only
re-arms once the score falls back below `off` (hysteresis) or changes sign (a smile straight into a frown: at a
low frame rate the smoothed score can jump over the rest band between two frames). A nod (yes) or shake (no) is a
head gesture: at least `min_swings` alternating swings of the pitch (or yaw) within a window.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class FeedbackEvent:
    onset: float        # stream time (s) when the expression or gesture began: the stamp
    decided: float      # stream time (s) of the frame that confirmed it
    value: int          # +1 good, -1 bad
    confidence: float   # 0..1
    cue: str            # smile | frown | nod | shake

    def as_dict(self) -> dict:
        return {"onset_s": round(self.onset, 3), "decided_s": round(self.decided, 3), "value": self.value,
                "confidence": round(self.confidence, 3), "cue": self.cue}


class ExpressionDebouncer:
    def __init__(self, smoothing_s: float = 0.1, on: float = 0.45, off: float = 0.2, min_duration_s: float = 0.2,
                 max_gap_s: float = 0.5):
        if not 0.0 < off < on <= 1.0:
            raise ValueError(f"need 0 < off < on <= 1, got off={off}, on={on}")
        self.smoothing_s, self.on, self.off = smoothing_s, on, off
        self.min_duration_s, self.max_gap_s = min_duration_s, max_gap_s
        self.reset()

    def reset(self) -> None:
        self.smoothed = 0.0
        self.last_t: float | None = None
        self.raw_onset: dict[int, float | None] = {1: None, -1: None}  # when the raw score entered each side
        self.fired = 0  # sign of the event of the current expression; 0 = armed for either sign

    def hold(self, t: float) -> None:
        """A frame with a face whose cues were not read (its head pitched, expression.py): the face is still there, so
        time moves on (no gap, no reset) but the smoothed score and the expression reported stay as they were: a smile
        held through a nod is one event, not two."""
        if self.last_t is not None and t - self.last_t > self.max_gap_s:
            self.reset()   # a gap before this frame still ends the expression
        elif self.last_t is not None and t > self.last_t:
            self.last_t = t

    def update(self, t: float, score: float | None) -> FeedbackEvent | None:
        """Feed one frame's signed score (-1..1), or None when no face was read (a NaN/inf score counts as None: one
        such frame would otherwise make the smoothed score NaN for good, and no expression would ever fire again)."""
        if self.last_t is not None and t - self.last_t > self.max_gap_s:
            self.reset()  # the face was gone (faceless frames, or no frames at all): an expression cannot span the gap
        if score is None or not math.isfinite(score):
            return None
        dt = 0.0 if self.last_t is None else max(t - self.last_t, 0.0)
        alpha = 1.0 if self.smoothing_s <= 0 else 1.0 - math.exp(-dt / self.smoothing_s)
        self.smoothed += alpha * (score - self.smoothed)  # the first frame (dt 0) starts from rest
        self.last_t = t
        for sign in (1, -1):
            if sign * score >= self.off:
                self.raw_onset[sign] = t if self.raw_onset[sign] is None else self.raw_onset[sign]
            else:
                self.raw_onset[sign] = None
        if abs(self.smoothed) < self.off:
            self.fired = 0  # back to rest: the next expression is a new event
            return None
        sign = 1 if self.smoothed > 0 else -1
        onset = self.raw_onset[sign]
        # Only the sign already reported is held back: the opposite expression is a new event even if the smoothed
        # score never passed through the rest band on its way (it need not at 5-20 fps).
        if self.fired != sign and abs(self.smoothed) >= self.on and onset is not None \
                and t - onset >= self.min_duration_s:
            self.fired = sign
            return FeedbackEvent(onset, t, sign, min(1.0, abs(self.smoothed)), "smile" if sign > 0 else "frown")
        return None


class _Zigzag:
    """Counts alternating swings of at least `amplitude` in a signal (a zigzag filter)."""

    REST_BAND = 0.25  # x amplitude: a value this close to the level a swing left from counts as not yet moving

    def __init__(self, amplitude: float):
        self.amplitude = amplitude

    def swings(self, samples: list[tuple[float, float]]) -> tuple[int, float | None]:
        """(number of swings, time the first swing started) over (t, value) samples. The first swing starts at the
        last sample still within REST_BAND of the level it left: a head held still (or jittering) before a nod sits
        at that level for the whole window, and its extreme (the first or the lowest sample) can be up to a window
        before the head moved."""
        if not samples:
            return 0, None
        lo = hi = samples[0]
        direction, count, start, extreme = 0, 0, None, samples[0]
        for i, (t, v) in enumerate(samples[1:], 1):
            if direction == 0:
                lo = (t, v) if v < lo[1] else lo
                hi = (t, v) if v > hi[1] else hi
                if v - lo[1] >= self.amplitude:
                    direction, count, extreme = 1, 1, (t, v)
                elif hi[1] - v >= self.amplitude:
                    direction, count, extreme = -1, 1, (t, v)
                if direction:
                    level = lo[1] if direction > 0 else hi[1]
                    band = self.REST_BAND * self.amplitude
                    start = max(ts for ts, vs in samples[:i] if direction * (vs - level) <= band)
            elif direction * (v - extreme[1]) > 0:
                extreme = (t, v)  # still moving the same way
            elif direction * (extreme[1] - v) >= self.amplitude:
                direction, count, extreme = -direction, count + 1, (t, v)
        return count, start


class HeadGestureDetector:
    """Nod (pitch swings) -> +1, shake (yaw swings) -> -1. The other axis must stay comparatively still."""

    def __init__(self, window_s: float = 1.5, amplitude: float = 0.12, min_swings: int = 3, refractory_s: float = 1.0):
        self.window_s, self.min_swings, self.refractory_s = window_s, min_swings, refractory_s
        self.zigzag = _Zigzag(amplitude)
        self.history: deque[tuple[float, float, float]] = deque()
        self.quiet_until = -math.inf

    def reset(self) -> None:
        self.history.clear()
        self.quiet_until = -math.inf  # a new stream's clock may start far below the old one's

    def update(self, t: float, yaw: float | None, pitch: float | None) -> FeedbackEvent | None:
        if yaw is None or pitch is None or not math.isfinite(yaw) or not math.isfinite(pitch) or t < self.quiet_until:
            return None  # the tail of a gesture just reported does not start a new one
        self.history.append((t, yaw, pitch))
        while self.history and t - self.history[0][0] > self.window_s:
            self.history.popleft()
        if len(self.history) < 4:
            return None
        yaws = [(s[0], s[1]) for s in self.history]
        pitches = [(s[0], s[2]) for s in self.history]
        yaw_range = max(v for _, v in yaws) - min(v for _, v in yaws)
        pitch_range = max(v for _, v in pitches) - min(v for _, v in pitches)
        for samples, own, other, value, cue in ((pitches, pitch_range, yaw_range, 1, "nod"),
                                                (yaws, yaw_range, pitch_range, -1, "shake")):
            count, start = self.zigzag.swings(samples)
            if count >= self.min_swings and other < 0.5 * own:
                self.history.clear()
                self.quiet_until = t + self.refractory_s
                confidence = min(1.0, own / (2 * self.zigzag.amplitude))
                return FeedbackEvent(start, t, value, confidence, cue)
        return None
