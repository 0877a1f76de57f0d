"""Whisper (openai-whisper) as a recogniser, from a checkpoint file on disk; nothing is ever downloaded.

Whisper is not streaming: feed() collects the utterance the endpointer cut, finish() decodes it
(greedy, English, no timestamps). The checkpoint is the file openai-whisper's own load_model
writes ({"dims": ..., "model_state_dict": ...}), loaded with weights_only=True. No weights exist
on these machines, so the plumbing is tested with a tiny randomly initialised model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from koba_ros.errors import KobaError, reason
from koba_ros.speech.recognizers import Hypothesis, Recognizer


def _whisper():
    try:
        import whisper
    except ImportError:
        raise KobaError("the whisper backend needs openai-whisper (pip install openai-whisper)") from None
    return whisper


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """A whisper.model.Whisper from a checkpoint file (KobaError for a missing or malformed file)."""
    whisper = _whisper()
    import torch

    if not str(path).strip():  # Path("") is ".", which would be named as the missing file
        raise KobaError("no whisper checkpoint given: set the checkpoint parameter (koba asr --checkpoint FILE.pt)")
    path = Path(path)
    if not path.is_file():
        raise KobaError(f"whisper checkpoint not found: {path}; set the checkpoint parameter")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
        model = whisper.model.Whisper(whisper.model.ModelDimensions(**data["dims"]))
        model.load_state_dict(data["model_state_dict"])
    except Exception as exc:   # pickle, key, shape errors: all mean "not a whisper checkpoint"
        raise KobaError(f"{path} is not a whisper checkpoint: {reason(exc)}") from None
    return model.to(device).eval()


class WhisperRecognizer(Recognizer):
    backend = "whisper"

    def __init__(self, checkpoint: str = "", device: str = "cpu", model=None):
        self.whisper = _whisper()
        self.model = model if model is not None else load_checkpoint(checkpoint, device)
        self.name = Path(checkpoint).name if checkpoint else "in-memory"
        self.audio: list[np.ndarray] = []

    def start(self) -> None:
        self.audio = []

    def feed(self, samples: np.ndarray) -> None:
        self.audio.append(np.asarray(samples, dtype=np.int16))

    def abort(self) -> None:
        self.audio = []

    def finish(self) -> Hypothesis:
        samples = np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)
        self.audio = []
        if len(samples) == 0:
            return Hypothesis("", 0.0, [], self.backend, self.name)
        audio = self.whisper.pad_or_trim(samples.astype(np.float32) / 32768.0)
        mel = self.whisper.log_mel_spectrogram(audio, n_mels=self.model.dims.n_mels).to(self.model.device)
        options = self.whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False,
                                               sample_len=48)
        result = self.whisper.decode(self.model, mel, options)
        text = result.text.strip()
        confidence = float(np.exp(result.avg_logprob)) if text and np.isfinite(result.avg_logprob) else 0.0
        if result.no_speech_prob > 0.6:   # whisper's own silence detector
            text, confidence = "", 0.0
        return Hypothesis(text, confidence, [], self.backend, self.name)
