"""What the loudspeaker played, lined up with the microphone's samples by time: the echo canceller's reference.

tts_node publishes each utterance it plays (koba_interfaces/AudioChunk on /speech/playback, stamped with the time
its first sample starts playing); microphone chunks are stamped with the capture time of their first sample. Both
clocks are the ROS clock, in integer nanoseconds here, and both streams are 16 kHz mono int16 by the time they
arrive (speech_node converts them).

- `ReferenceBuffer.add(start_ns, samples)` keeps a played utterance; `take(start_ns, n)` gives the n reference
  samples that cover the microphone's [start, start + n / rate): zeros where nothing was playing (before, between and
  after utterances), the sum where two overlap. Utterances that ended `horizon_s` before the latest microphone time
  are dropped.
- `MicTimeline` turns a stream of stamped chunks into the time of each chunk's first sample, counting samples while
  the stamps agree with the count (within `tolerance_s`; stamps jitter), and following a stamp that jumps (a gap in
  the audio, a restart).

The unknown extra delay of real hardware (the sound card's output buffer before the first sample is heard, its input
buffer before a captured sample is stamped: tens of ms) is not measured here: it only moves the echo later inside
the canceller's filter, whose tail (250 ms by default) covers it and the room's reverberation.
"""
from __future__ import annotations

import threading

import numpy as np

from koba_ros.errors import KobaError

NS = 1_000_000_000


class ReferenceBuffer:
    def __init__(self, rate: int = 16000, horizon_s: float = 30.0):
        self.rate = int(rate)
        self.horizon_ns = int(horizon_s * NS)
        self.segments: list[tuple[int, np.ndarray]] = []   # (index of the first sample on the rate's grid, samples)
        self.lock = threading.Lock()                        # add() and take() come from different threads
        self.mic_index: int | None = None                   # the first sample of the latest take()

    def index(self, time_ns: int) -> int:
        """The sample index at `time_ns` on this rate's grid (sample 0 at time 0), rounded to the nearest."""
        return (int(time_ns) * self.rate + NS // 2) // NS

    def add(self, start_ns: int, samples) -> None:
        samples = np.asarray(samples)
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise KobaError(f"playback reference must be 1-D int16 samples, got {samples.dtype} {samples.shape}")
        if not len(samples):
            return
        begin = self.index(start_ns)
        with self.lock:
            # Pruned by the playback's own time too: microphone stamps that never come near it (an unstamped /audio,
            # another host's clock) would otherwise keep every utterance, and take() would walk them all.
            horizon = self.horizon_ns * self.rate // NS
            self.segments = [(b, s) for b, s in self.segments if b + len(s) >= begin - horizon]
            self.segments.append((begin, samples.copy()))

    def far_from(self, start_ns: int) -> bool:
        """Whether the two clocks do not agree (an unstamped or differently clocked /audio), so no echo can be lined
        up: the microphone time `start_ns` is more than the horizon before the newest utterance's start, or an
        utterance arrived when the microphone was already more than the horizon past its end. A microphone that
        merely ran on past the end of an utterance it heard (silence after a sentence) is not far: take() drops that
        utterance once the horizon has passed, as it would any other."""
        horizon = self.horizon_ns * self.rate // NS
        with self.lock:
            newest = max((begin for begin, _ in self.segments), default=None)
            # The previous take() kept every utterance ending after its time minus the horizon: one ending before
            # came in since, already out of the microphone's reach.
            missed = self.mic_index is not None and any(begin + len(samples) < self.mic_index - horizon
                                                        for begin, samples in self.segments)
        return missed or (newest is not None and newest - self.index(start_ns) > horizon)

    def take(self, start_ns: int, n: int) -> tuple[np.ndarray, bool]:
        """(the reference for the n microphone samples from `start_ns`, whether any played sample falls in them)."""
        first = self.index(start_ns)
        out = np.zeros(n, dtype=np.int32)
        covered = False
        with self.lock:
            keep = []
            for begin, samples in self.segments:
                end = begin + len(samples)
                if end < first - self.horizon_ns * self.rate // NS:
                    continue                                   # long over: dropped
                keep.append((begin, samples))
                lo, hi = max(begin, first), min(end, first + n)
                if lo < hi:
                    out[lo - first:hi - first] += samples[lo - begin:hi - begin]
                    covered = True
            self.segments = keep
            self.mic_index = first
        return np.clip(out, -32768, 32767).astype(np.int16), covered

    def clear(self) -> None:
        with self.lock:
            self.segments, self.mic_index = [], None


class MicTimeline:
    def __init__(self, rate: int = 16000, tolerance_s: float = 0.02):
        self.rate = int(rate)
        self.tolerance_ns = int(tolerance_s * NS)
        self.next_ns: int | None = None     # when the sample after the last chunk was captured, by the count

    def place(self, stamp_ns: int, n: int) -> int:
        """The capture time of this chunk's first sample (ns), given its stamp and its length in samples."""
        stamp_ns = int(stamp_ns)
        start = stamp_ns if self.next_ns is None or abs(stamp_ns - self.next_ns) > self.tolerance_ns else self.next_ns
        self.next_ns = start + int(n) * NS // self.rate
        return start

    def reset(self) -> None:
        self.next_ns = None
