"""Streaming speech → utterances: endpointer and recogniser run as the audio arrives.

Audio is decoded while the person talks; when the endpointer hears the end of speech only
the recogniser's final search is left, so an utterance comes out shortly after the hangover.
While the robot itself talks (TTS speaking state) nothing heard becomes a result, so the robot never answers its own
voice, with one exception: "stop" must get through while the robot says what it is doing (a jog of up to ~20 cm runs
entirely while it talks). So the real audio still goes to the endpointer and recogniser, and only an early stop
(below) is published from it; every such utterance is then aborted. An utterance in progress when the robot starts or
falls silent runs on, marked as overlapping its voice, and only an early stop can come out of it either (session 26:
it used to be dropped there, and a stop said at that moment with it). A false stop from the robot's own voice
only holds the arm (grounding_node keeps an open question: docs/grounding.md, Session 24); the replies to a stop
("Holding still.", "Move cancelled.") were checked not to trigger one. A recogniser without early stops gets
silence instead, as before.

Latency is measured as it would be on a live microphone: the wall-clock moment the end of
speech was captured is the arrival time of the chunk holding it, minus the audio after it in
that chunk; latency = publication time - that moment.

"stop" must not wait for the end of speech: when the recogniser is sure of a stop while the person
still talks (Recognizer.early_stop), a stop utterance (`early`) goes out at once, its latency counted
from the arrival of the chunk that completed it; the utterance's own result follows at its end.

Steady noise (a fan, hiss) can pass the VAD and pocketsphinx will then force a word onto it with
full confidence (a single path has posterior 1). Speech is modulated by syllables; steady noise is
not: a segment whose 30 ms frame energies (without each frame's mean, a DC offset) vary by less than
`min_energy_spread_db` (standard deviation) is reported as an empty utterance.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from koba_ros.speech.audio import RATE
from koba_ros.speech.recognizers import Recognizer
from koba_ros.speech.vad import Endpointer


@dataclass
class Utterance:
    """ROS-free twin of koba_interfaces/Utterance."""
    text: str
    confidence: float
    alternatives: list[str] = field(default_factory=list)
    audio_duration: float = 0.0    # seconds of audio in the utterance
    latency: float = 0.0           # seconds from end of speech to the result
    backend: str = ""
    speech_end: float = 0.0        # stream time (s) of the end of speech (an early stop: of the audio so far)
    early: bool = False            # a stop published while the person was still talking


class SpeechStream:
    def __init__(self, recognizer: Recognizer, endpointer: Endpointer | None = None,
                 clock: Callable[[], float] = time.monotonic, min_energy_spread_db: float = 4.0,
                 drop_at_speaking_change: bool = False):
        self.recognizer = recognizer
        self.endpointer = endpointer or Endpointer()
        self.clock = clock
        self.min_energy_spread_db = min_energy_spread_db
        self.drop_at_speaking_change = drop_at_speaking_change   # True: before session 26 (the bench's baseline)
        self.frame_db: list[float] = []
        self.speaking = False
        self.in_utterance = False
        self.overlapped_speaking = False   # the utterance in progress heard the robot talk for some of its time
        self.utterance_samples = 0
        self.stream_samples = 0      # audio seen so far, for stream time

    def set_speaking(self, speaking: bool) -> None:
        """The robot started or stopped talking. An utterance in progress runs on, marked as overlapping the robot's
        voice: only an early stop can come out of it (its final result would be, or hold, the robot's own voice).
        It used to be dropped here (`drop_at_speaking_change`), and a stop said as the robot fell silent was lost:
        the rest of it was decoded as a new utterance ("op")."""
        if speaking != self.speaking:
            if self.drop_at_speaking_change:
                self.abort()
            elif self.in_utterance:
                self.overlapped_speaking = True
        self.speaking = speaking

    def abort(self) -> None:
        """Forget the utterance in progress, without a result (the robot's voice; a deactivated node)."""
        if self.in_utterance:
            self.recognizer.abort()
            self.in_utterance = False
        self.endpointer.reset()

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """16 kHz mono int16 audio of any length → the utterances it completes."""
        arrived = self.clock()
        samples = np.asarray(samples, dtype=np.int16)
        if self.speaking and not getattr(self.recognizer, "early_stops", False):
            samples = np.zeros_like(samples)   # no stop to listen for: silence keeps the stream clock running
        self.stream_samples += len(samples)
        chunk_end = self.stream_samples / RATE
        out = []
        for event in self.endpointer.push(samples):
            for utterance in self._event(event, chunk_end):
                utterance.latency = self.clock() - (arrived - (chunk_end - utterance.speech_end))
                out.append(utterance)
        return out

    def flush(self) -> list[Utterance]:
        """End of input: decode an utterance still open."""
        arrived = self.clock()
        out = []
        for event in self.endpointer.flush():
            for utterance in self._event(event, self.stream_samples / RATE):
                utterance.latency = self.clock() - arrived
                out.append(utterance)
        return out

    def _event(self, event, chunk_end: float) -> list[Utterance]:
        if event.kind == "start":
            self.recognizer.start()
            self.in_utterance, self.utterance_samples, self.frame_db = True, 0, []
            self.overlapped_speaking = self.speaking
        if not self.in_utterance:
            return []
        if len(event.samples):
            self.recognizer.feed(event.samples)
            self.utterance_samples += len(event.samples)
            frames = event.samples[: len(event.samples) // 480 * 480].astype(np.float64).reshape(-1, 480)
            # each frame's mean (a DC offset) left out: a constant in every frame flattened the spread (session 30)
            self.frame_db += list(10 * np.log10(np.var(frames, axis=1) + 1.0))
        if event.kind != "end":
            if not self.recognizer.early_stop():
                return []
            # Not a posterior (there is none before the end): the spotter and the main search both hear "stop".
            return [Utterance("stop", 1.0, [], self.utterance_samples / RATE, 0.0, self.recognizer.backend,
                              chunk_end, early=True)]
        self.in_utterance = False
        if self.speaking or self.overlapped_speaking:
            # the robot's own voice (or a person over it): no result but an early stop. A stop from the final search was
            # measured twice (session 26): any stop it gives (commit 0563073: 47 false stops on 228 of the robot's
            # sentences against 5) and only the main search's own with the spotter agreeing (commit 7c4cb86: 2 false
            # stops of 42 through a room with AEC against 0, for 4 more of 36 stops heard over the robot).
            self.recognizer.abort()
            return []
        if len(self.frame_db) > 1 and np.std(self.frame_db) < self.min_energy_spread_db:
            # Steady noise, not speech: no final search, no second pass. Running the final search for a stop said
            # over a fan was measured (session 26, commit 25ddd7d): 48 stops on pure steady noise against 17.
            self.recognizer.abort()
            return [Utterance("", 0.0, [], self.utterance_samples / RATE, 0.0, self.recognizer.backend,
                              event.speech_end)]
        hyp = self.recognizer.finish()
        return [Utterance(hyp.text, hyp.confidence, hyp.alternatives, self.utterance_samples / RATE, 0.0,
                          hyp.backend, event.speech_end)]


def transcribe(recognizer: Recognizer, samples: np.ndarray, chunk_seconds: float = 0.03,
               early_stops: bool = False) -> list[Utterance]:
    """All utterances in a recording, streamed in microphone-sized chunks (what `koba asr` and the bench use).
    A transcript leaves out the early stops (their utterance's final result has the words); `early_stops` keeps
    them, in the order they were published."""
    stream = SpeechStream(recognizer)
    step = max(1, int(chunk_seconds * RATE))
    out = []
    for i in range(0, len(samples), step):
        out += stream.feed(samples[i:i + step])
    return [u for u in out + stream.flush() if early_stops or not u.early]
