"""Voice activity: webrtcvad frame decisions turned into utterance start/end events.

An utterance starts after `start_frames` voiced 30 ms frames in a row (the frames before
them, `preroll_ms`, are kept so the first consonant is not cut) and ends after `hangover_ms`
of unvoiced frames, or at `max_seconds`. Frames quieter than `min_dbfs` (their mean, a DC offset, left out) never
count as voiced, so a silent or near-silent input never opens an utterance.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE

FRAME = RATE * 30 // 1000   # webrtcvad takes 10, 20 or 30 ms frames


@dataclass
class VadEvent:
    kind: str                 # "start" | "audio" | "end"
    samples: np.ndarray       # audio belonging to the utterance (pre-roll on start, trailing frames on end)
    speech_end: float = 0.0   # on "end": stream time (s) where the last voiced frame ended


class Endpointer:
    def __init__(self, aggressiveness: int = 2, start_frames: int = 3, hangover_ms: int = 240,
                 preroll_ms: int = 300, max_seconds: float = 10.0, min_dbfs: float = -50.0):
        import webrtcvad

        if aggressiveness not in (0, 1, 2, 3):
            raise KobaError(f"vad aggressiveness must be 0..3, got {aggressiveness}")
        if not 30 <= hangover_ms <= 5000:  # NaN fails too; under one 30 ms frame would end words at every pause
            raise KobaError(f"hangover_ms must be 30..5000 ms of silence, got {hangover_ms}")
        self.vad = webrtcvad.Vad(aggressiveness)
        self.start_frames = start_frames
        self.end_frames = max(1, hangover_ms // 30)
        self.max_frames = int(max_seconds * 1000 / 30)
        self.min_rms = 32768.0 * 10 ** (min_dbfs / 20)
        self.preroll: deque[np.ndarray] = deque(maxlen=max(start_frames, preroll_ms // 30))
        self.pending = np.zeros(0, dtype=np.int16)
        self.frames_seen = 0
        self.reset()

    def reset(self) -> None:
        """Forget any utterance in progress (used when the robot starts talking)."""
        self.in_speech = False
        self.voiced_run = 0
        self.unvoiced_run = 0
        self.utterance_frames = 0
        self.last_voiced_end = 0.0
        self.preroll.clear()

    def is_voiced(self, frame: np.ndarray) -> bool:
        if np.std(frame.astype(np.float64)) < self.min_rms:   # the level without a DC offset, which passed the gate
            return False
        return self.vad.is_speech(frame.tobytes(), RATE)

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed 16 kHz mono int16 audio of any length; returns the events it completes."""
        self.pending = np.concatenate([self.pending, np.asarray(samples, dtype=np.int16)])
        events = []
        while len(self.pending) >= FRAME:
            frame, self.pending = self.pending[:FRAME], self.pending[FRAME:]
            self.frames_seen += 1
            events += self._frame(frame)
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an utterance in progress."""
        self.pending = np.zeros(0, dtype=np.int16)
        if not self.in_speech:
            return []
        speech_end = self.last_voiced_end
        self.reset()
        return [VadEvent("end", np.zeros(0, dtype=np.int16), speech_end)]

    def _frame(self, frame: np.ndarray) -> list[VadEvent]:
        voiced = self.is_voiced(frame)
        now = self.frames_seen * FRAME / RATE   # stream time at the end of this frame
        if not self.in_speech:
            self.preroll.append(frame)
            self.voiced_run = self.voiced_run + 1 if voiced else 0
            if self.voiced_run < self.start_frames:
                return []
            self.in_speech, self.unvoiced_run, self.utterance_frames = True, 0, len(self.preroll)
            self.last_voiced_end = now
            start = np.concatenate(list(self.preroll))
            self.preroll.clear()
            return [VadEvent("start", start)]
        self.utterance_frames += 1
        if voiced:
            self.unvoiced_run, self.last_voiced_end = 0, now
        else:
            self.unvoiced_run += 1
        if self.unvoiced_run >= self.end_frames or self.utterance_frames >= self.max_frames:
            speech_end = self.last_voiced_end
            self.reset()
            return [VadEvent("end", frame, speech_end)]
        return [VadEvent("audio", frame)]
