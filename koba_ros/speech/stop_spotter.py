"""A keyword spotter for "stop", run alongside the main decode: a spoken stop must never be lost.

The main search returns a word posterior, and one-word utterances of some voices get a low one
("stop" from espeak's en-gb voice: 0.08, under the recogniser's 0.2 cut-off), so the stop was
dropped. pocketsphinx's keyphrase search (kws) instead asks, frame by frame, whether the phones of
"stop" score better than a phone loop by more than a threshold; it needs no language model and
no posterior. Its own Decoder (one search per decoder) is fed the same audio as the main search.

The threshold trades missed stops for false stops; it was chosen on a tuning set of other voices
and sentences than the reported one (bench/asr.py --stop-thresholds, docs/speech.md).

A quiet "stop" (-20 dB) often scores under that threshold. With `quiet_threshold` the same search also spots a
second keyphrase, `stop_quiet`, with the phones of "stop" and a laxer threshold of its own: one kws search tracks
each keyphrase separately, so the strict detections stay exactly what they were (checked on 40 clips, session 20),
and the extra keyphrase costs one more small HMM, not a second decoder. The recogniser trusts a quiet detection
only where its main search heard no command at all (recognizers.py).
"""
from __future__ import annotations

import numpy as np

from koba_ros.errors import KobaError

KEYPHRASE = "stop"
# kws_threshold: the most sensitive setting with ≤ 2% false stops on the tuning set (docs/speech.md).
STOP_THRESHOLD = 1e-15
# The quiet keyphrase's: chosen on the tuning voices as the most sensitive of 1e-20 ... 1e-50 that added no false
# stop there, then checked on voices no speech work had used, in two rounds (docs/speech.md "Session 20").
QUIET_STOP_THRESHOLD = 1e-50


class StopSpotter:
    def __init__(self, threshold: float = STOP_THRESHOLD, keyphrase: str = KEYPHRASE,
                 quiet_threshold: float | None = None):
        import pocketsphinx

        for name, value in (("stop threshold", threshold), ("quiet stop threshold", quiet_threshold)):
            if value is not None and not 0 < value < 1:
                raise KobaError(f"{name} must be in (0, 1), got {value}")
        try:
            self.decoder = pocketsphinx.Decoder(loglevel="ERROR", keyphrase=keyphrase, kws_threshold=threshold)
            if quiet_threshold is not None:
                self._add_quiet_keyphrase(keyphrase, threshold, quiet_threshold)
        except (RuntimeError, ValueError) as exc:
            raise KobaError(f"pocketsphinx could not start the stop spotter: {exc}") from None
        self.keyphrase, self.quiet_keyphrase = keyphrase, f"{keyphrase}_quiet"
        self.started = False
        self.spans: list[tuple[int, int]] = []
        self.quiet_spans: list[tuple[int, int]] = []

    def _add_quiet_keyphrase(self, keyphrase: str, threshold: float, quiet_threshold: float) -> None:
        import tempfile

        phones = self.decoder.lookup_word(keyphrase)
        if phones is None:
            raise ValueError(f"{keyphrase!r} is not in the dictionary")
        self.decoder.add_word(f"{keyphrase}_quiet", phones, True)
        with tempfile.TemporaryDirectory() as tmp:  # pocketsphinx reads a keyphrase list only from a file
            path = f"{tmp}/keyphrases.txt"
            with open(path, "w") as f:
                f.write(f"{keyphrase} /{threshold:g}/\n{keyphrase}_quiet /{quiet_threshold:g}/\n")
            self.decoder.add_kws("stop_and_quiet_stop", path)
        self.decoder.activate_search("stop_and_quiet_stop")

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
        detection's first and last frame (10 ms frames from the utterance's start, as the main search counts);
        `quiet_spans` the same for the quiet keyphrase."""
        self.spans, self.quiet_spans = [], []
        if not self.started:
            return False
        self.decoder.end_utt()
        self.started = False
        for segment in self.decoder.seg() or []:
            word = segment.word.strip()  # a keyphrase list's words come back with a trailing space
            if word in (self.keyphrase, self.quiet_keyphrase):
                spans = self.spans if word == self.keyphrase else self.quiet_spans
                spans.append((segment.start_frame, segment.end_frame))
        return bool(self.spans)
