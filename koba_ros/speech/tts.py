"""Text-to-speech with espeak-ng.

The text goes to espeak-ng as one argv element after `--` (never through a shell, never
read as an option). Audio is played on the default output device when one exists;
otherwise, or when an output WAV is configured, it is written to a file.
`Speaker.on_playback(samples, rate)`, when set, is called with each utterance's samples (int16 mono) just before
they are played (or written, with no device): tts_node publishes them as the echo canceller's reference.
"""
from __future__ import annotations

import errno
import shutil
import subprocess
import tempfile
import time
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

from koba_ros.errors import KobaError, reason

MAX_CHARS = 2000  # a robot's sentence; longer text is almost certainly a mistake upstream


@dataclass
class Spoken:
    text: str
    wav_path: str | None      # where the audio was written (None when only played)
    duration: float           # seconds of audio
    played: bool              # True when it went to a sound device


def has_output_device() -> bool:
    """True when PortAudio sees an output device (False on headless machines and in CI)."""
    try:
        import sounddevice
        return any(d["max_output_channels"] > 0 for d in sounddevice.query_devices())
    except Exception:  # no PortAudio, no devices, no permission: all mean "cannot play"
        return False


def wav_duration(path: str | Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


class CannotStart(KobaError):
    """espeak-ng could not be started (the system is out of processes or memory): not the voice's fault."""


# fork/exec failures that pass (a loaded machine: "Resource temporarily unavailable"), tried again after these waits
RETRY_SPAWN_S = (0.1, 0.3, 1.0)


class Speaker:
    def __init__(self, voice: str = "en-us", rate: int = 160, output_wav: str = "", play: bool | None = None):
        self.espeak = shutil.which("espeak-ng")
        if self.espeak is None:
            raise KobaError("espeak-ng not found; run scripts/setup.sh (it installs the Debian package)")
        if not 80 <= int(rate) <= 450:
            raise KobaError(f"rate must be 80..450 words per minute, got {rate}")
        self.voice = voice
        self.rate = int(rate)
        self.output_wav = output_wav
        if output_wav:  # checked now, not at the first sentence: a node's worker must not meet it mid-stream
            self._writable(output_wav)
        self.play = has_output_device() if play is None else play
        self.on_playback = None   # called with (int16 samples, rate) as an utterance starts playing
        # The voice too: an unknown one used to start a node that then failed every sentence.
        with tempfile.TemporaryDirectory() as tmp:
            try:
                self.synthesize("ok", Path(tmp) / "voice.wav")
            except CannotStart:
                raise
            except KobaError as exc:
                raise KobaError(f"voice {voice!r} does not work ({exc}); espeak-ng --voices lists them") from None

    @staticmethod
    def _writable(path: str | Path) -> None:
        """The folder of `path` exists or is made, and `path` is not a folder or a device: one line otherwise."""
        path = Path(path)
        if path.is_dir() or (path.exists() and not path.is_file()):
            raise KobaError(f"cannot write a WAV file to {path}: it is not a regular file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KobaError(f"cannot write a WAV file to {path}: {reason(exc)}") from None

    def check_text(self, text: str) -> str:
        # Control characters are not speech (espeak-ng reads them as silence): they count as spaces.
        text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(text))
        text = " ".join(text.split())
        if not text:
            raise KobaError("nothing to say: the text is empty")
        if len(text) > MAX_CHARS:
            raise KobaError(f"text too long to say ({len(text)} characters, limit {MAX_CHARS})")
        if not any(c.isalnum() for c in text):
            raise KobaError(f"nothing to say: {text[:40]!r} has no letters or digits")
        return text

    def synthesize(self, text: str, out_path: str | Path) -> float:
        """Write `text` as a WAV file; returns its duration in seconds. Every failure is a KobaError."""
        text = self.check_text(text)
        self._writable(out_path)
        cmd = [self.espeak, "-v", self.voice, "-s", str(self.rate), "-w", str(out_path), "--", text]
        for wait in (*RETRY_SPAWN_S, None):
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                break
            except OSError as exc:
                # Under load fork can fail with EAGAIN; it was reported as "voice 'en-gb' does not work" (session 25)
                if exc.errno not in (errno.EAGAIN, errno.ENOMEM):
                    raise KobaError(f"espeak-ng failed: {reason(exc)}") from None
                if wait is None:
                    raise CannotStart(f"could not start espeak-ng: {reason(exc)}") from None
                time.sleep(wait)
            except subprocess.TimeoutExpired as exc:
                raise KobaError(f"espeak-ng failed: {reason(exc)}") from None
        if proc.returncode != 0 or not Path(out_path).is_file():
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise KobaError(f"espeak-ng failed: {detail[0] if detail else 'exit ' + str(proc.returncode)}")
        try:
            return wav_duration(out_path)
        except (OSError, EOFError, wave.Error) as exc:
            raise KobaError(f"espeak-ng wrote no readable WAV to {out_path}: {reason(exc)}") from None

    def speak(self, text: str) -> Spoken:
        """Say `text`: play it when a device exists, and write it to output_wav when one is set."""
        text = self.check_text(text)
        if self.output_wav or not self.play:
            path = self.output_wav or str(Path(tempfile.gettempdir()) / "koba_tts_last.wav")
            duration = self.synthesize(text, path)
            self._announce(path)
            played = self.play and self._play(path)
            return Spoken(text, path, duration, played)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "say.wav"
            duration = self.synthesize(text, path)
            self._announce(path)
            return Spoken(text, None, duration, self._play(path))

    def _announce(self, path: str | Path) -> None:
        """Pass the utterance about to play to on_playback (its failures are the caller's, not the speech's)."""
        if self.on_playback is None:
            return
        import soundfile

        data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
        self.on_playback(data[:, 0].copy(), int(rate))

    @staticmethod
    def _play(path: str | Path) -> bool:
        try:
            import sounddevice
            import soundfile
            data, rate = soundfile.read(str(path), dtype="float32")
            sounddevice.play(data, rate, blocking=True)
            return True
        except Exception:
            return False
