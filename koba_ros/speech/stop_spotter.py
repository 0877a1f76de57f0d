"""A keyword spotter for "stop", run alongside the main decode: a spoken stop must never be lost.

The main search returns a word posterior, and one-word utterances of some voices get a low one
("stop" from espeak's en-gb voice: 0.08, under the recogniser's 0.2 cut-off), so the stop was
dropped. pocketsphinx's keyphrase search (kws) instead asks, frame by frame, whether the phones of
"stop" score better than a phone loop by more than a threshold; it needs no language model and
no posterior. Its own Decoder (one search per decoder) is fed the same audio as the main search.

The threshold trades missed stops for false stops; it was chosen on a tuning set of other voices
and sentences than the reported one (bench/asr.py --stop-thresholds, docs/speech.md).
"""
from __future__ import annotations

import numpy as np

from koba_ros.errors import KobaError

KEYPHRASE = "stop"
# kws_threshold: the most sensitive setting with ≤ 2% false stops on the tuning set (docs/speech.md).
STOP_THRESHOLD = 1e-15


class StopSpotter:
    def __init__(self, threshold: float = STOP_THRESHOLD, keyphrase: str = KEYPHRASE):
        import pocketsphinx

        if not 0 < threshold < 1:
            raise KobaError(f"stop threshold must be in (0, 1), got {threshold}")
        try:
            self.decoder = pocketsphinx.Decoder(loglevel="ERROR", keyphrase=keyphrase, kws_threshold=threshold)
        except (RuntimeError, ValueError) as exc:
            raise KobaError(f"pocketsphinx could not start the stop spotter: {exc}") from None
        self.keyphrase = keyphrase
        self.started = False
        self.spans: list[tuple[int, int]] = []

    def start(self) -> None:
        self.decoder.start_utt()
        self.started = True

    def feed(self, samples: np.ndarray) -> None:
        if self.started:
            self.decoder.process_raw(np.asarray(samples, dtype=np.int16).tobytes(), False, False)

    def heard(self) -> bool:
        """Has the keyphrase been spotted so far in this utterance (usable while the person still talks)."""
        hyp = self.decoder.hyp()
        return bool(self.started and hyp is not None and self.keyphrase in hyp.hypstr.split())

    def finish(self) -> bool:
        """End the utterance; True when the keyphrase was spotted anywhere in it. `spans` then holds where: each
        detection's first and last frame (10 ms frames from the utterance's start, as the main search counts)."""
        self.spans = []
        if not self.started:
            return False
        self.decoder.end_utt()
        self.started = False
        self.spans = [(s.start_frame, s.end_frame) for s in (self.decoder.seg() or []) if s.word == self.keyphrase]
        hyp = self.decoder.hyp()
        return hyp is not None and self.keyphrase in hyp.hypstr.split()
