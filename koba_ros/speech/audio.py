"""Audio in: WAV/FLAC/raw files, microphone blocks and topic samples, all turned into 16 kHz mono int16.

Every recogniser in koba_ros.speech consumes exactly one format (16 kHz, mono, int16 numpy
array), so conversion happens once, here: channels are averaged, float samples are scaled
and clipped, and other rates are resampled with a polyphase filter (scipy.signal.resample_poly).
"""
from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from koba_ros.errors import KobaError

RATE = 16000  # what pocketsphinx's en-us model and webrtcvad want


MIN_RATE, MAX_RATE = 4000, 384000
MAX_PERIOD_S = 0.05  # a stream's resampling period (input samples per whole number of outputs) at most this long


def to_mono_int16(samples: np.ndarray, rate: int, resampler: StreamResampler | None = None) -> np.ndarray:
    """Any (frames,) or (frames, channels) int/float array at `rate` → 16 kHz mono int16. A whole recording is
    resampled at once; chunks of a stream go through their stream's `resampler` (its rate must be `rate`)."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise KobaError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
    if not MIN_RATE <= rate <= MAX_RATE:  # 1 Hz "audio" would be resampled to hours of samples
        raise KobaError(f"sample rate {rate} Hz is not audio this can use ({MIN_RATE} to {MAX_RATE} Hz)")
    if samples.dtype.kind == "f":
        if not np.all(np.isfinite(samples)):
            raise KobaError("audio contains NaN or infinite samples")
        x = samples.astype(np.float64)
    elif samples.dtype.kind in "iu":
        # Any integer width to [-1, 1); unsigned formats (8-bit WAV) are centred first.
        half = (int(np.iinfo(samples.dtype).max) + 1) / (2 if samples.dtype.kind == "u" else 1)
        x = (samples.astype(np.float64) - (half if samples.dtype.kind == "u" else 0)) / half
    else:
        raise KobaError(f"unsupported sample type {samples.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)  # average channels: keeps speech recorded on either
    if resampler is not None:
        x = resampler.feed(x)
    elif rate != RATE and x.size:
        from scipy.signal import resample_poly

        g = gcd(int(rate), RATE)
        x = resample_poly(x, RATE // g, int(rate) // g)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


class StreamResampler:
    """One stream's chunks at `rate` → 16 kHz, sample for sample what resampling the whole stream at once gives
    (scipy's resample_poly), `delay` input samples late.

    Resampling each chunk alone pads both of its ends with zeros and rounds its length up: a 1024-sample chunk at
    44.1 kHz then carries a click at each end and one extra sample, 43 times a second (the stream's clock drifts by
    0.13 %). Here the input is taken in whole periods of `down` samples (each gives exactly `up` outputs, so the
    lengths add up), and each block is resampled with `2 delay` samples of history before it; only the outputs
    that the filter computes from real samples on both sides are kept (the filter reaches `reach` input samples
    either way, `delay` >= `reach`)."""

    def __init__(self, rate: int):
        if not MIN_RATE <= rate <= MAX_RATE:
            raise KobaError(f"sample rate {rate} Hz is not audio this can use ({MIN_RATE} to {MAX_RATE} Hz)")
        ratio = Fraction(RATE, int(rate))
        if ratio.denominator > MAX_PERIOD_S * rate:
            # An odd rate (a sound card's 44099 Hz) has a period of seconds: up/down 16000/44099 would delay the
            # stream by a second and build a filter of 900k taps. The nearest ratio with a period under 50 ms
            # stretches time by 6.3e-4 at most (8005 Hz; every rate checked), which speech recognition never hears.
            ratio = ratio.limit_denominator(int(MAX_PERIOD_S * rate))
        self.rate, self.up, self.down = int(rate), ratio.numerator, ratio.denominator
        from scipy.signal import firwin

        # resample_poly's own filter, designed once here rather than on every chunk (a Kaiser-windowed sinc of
        # 10 max(up, down) taps each side: for 44.1 kHz, 8821 taps)
        most = max(self.up, self.down)
        self.filter = firwin(20 * most + 1, 1.0 / most, window=("kaiser", 5.0)) if most > 1 else None
        reach = -(-10 * max(self.up, self.down) // self.up) + 1
        self.delay = -(-reach // self.down) * self.down           # a whole number of periods
        self.history = np.zeros(2 * self.delay)
        self.pending = np.zeros(0)

    def feed(self, x: np.ndarray) -> np.ndarray:
        if self.up == self.down:
            return np.asarray(x, dtype=np.float64)
        from scipy.signal import resample_poly

        self.pending = np.concatenate([self.pending, x])
        n = len(self.pending) // self.down * self.down
        if n == 0:
            return np.zeros(0)
        block, self.pending = self.pending[:n], self.pending[n:]
        window = np.concatenate([self.history, block])
        first = self.delay * self.up // self.down  # the output at input position `delay` of the window
        out = resample_poly(window, self.up, self.down, window=self.filter)[first: first + n * self.up // self.down]
        self.history = window[-2 * self.delay:]
        return out


DC_POLE = 0.99   # the DC blocker's pole: -3 dB at 26 Hz, below any voice; a step settles in ~30 ms


class DcBlocker:
    """A one-pole high-pass, y[n] = x[n] - x[n-1] + DC_POLE y[n-1], over one stream's 16 kHz samples, its state
    carried from chunk to chunk. A microphone's DC offset (a cheap sound card's few hundred to thousands) flattened
    the frame energies that tell speech from steady noise, so speech was dropped as noise, and passed the VAD's
    level gate on silence (session 30)."""

    def __init__(self):
        self.state: np.ndarray | None = None

    def feed(self, samples: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter, lfilter_zi

        x = np.asarray(samples, dtype=np.float64)
        if not x.size:
            return np.asarray(samples, dtype=np.int16)
        b, a = (1.0, -1.0), (1.0, -DC_POLE)
        if self.state is None:   # as if the first sample's level had always been there: no step at the start
            self.state = lfilter_zi(b, a) * x[0]
        y, self.state = lfilter(b, a, x, zi=self.state)
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)


class AudioStream:
    """Chunks of one live stream (a topic or a microphone) → 16 kHz mono int16 through one StreamResampler, made
    anew when the stream's rate changes, and one DcBlocker (before echo cancellation, the VAD and the recogniser)."""

    def __init__(self):
        self.resampler: StreamResampler | None = None
        self.dc_blocker = DcBlocker()

    def convert(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if self.resampler is None or self.resampler.rate != int(rate):
            self.resampler = StreamResampler(int(rate))
        return self.dc_blocker.feed(to_mono_int16(samples, int(rate), self.resampler))


def interleaved_to_mono_int16(data, rate: int, channels: int, stream: AudioStream | None = None) -> np.ndarray:
    """An audio message's interleaved int16 samples (koba_interfaces/AudioChunk) → 16 kHz mono int16; chunks of a
    live stream pass their `stream`, which resamples them as one signal."""
    if channels < 1:
        raise KobaError(f"audio chunk must have at least one channel, got {channels}")
    samples = np.asarray(data, dtype=np.int16)
    if len(samples) % channels:
        raise KobaError(f"audio chunk of {len(samples)} samples is not a whole number of {channels}-channel frames")
    if stream is not None:
        return stream.convert(samples.reshape(-1, channels), int(rate))
    return to_mono_int16(samples.reshape(-1, channels), int(rate))


def load_audio(path: str | Path) -> np.ndarray:
    """A sound file (anything libsndfile reads; .raw = 16 kHz mono int16 little-endian) as 16 kHz mono int16."""
    path = Path(path)
    if not path.is_file():
        raise KobaError(f"no such audio file: {path}")
    if path.suffix.lower() in (".raw", ".pcm"):
        data = path.read_bytes()
        if len(data) % 2:
            raise KobaError(f"{path}: raw audio must be 16-bit samples (odd byte count {len(data)})")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float64", always_2d=False)
    except Exception as exc:  # libsndfile's errors are RuntimeError / LibsndfileError with a one-line reason
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise KobaError(f"cannot read audio file {path}: {reason}") from None
    return to_mono_int16(samples, int(rate))


def duration(samples: np.ndarray) -> float:
    return len(samples) / RATE


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at `snr_db` below the speech's power (samples louder than 100, so silent padding does not count),
    as the speech benchmarks and tests make noisy clips."""
    signal = x.astype(np.float64)
    power = np.mean(signal[np.abs(signal) > 100] ** 2)
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


class Microphone:
    """Blocks of 16 kHz mono int16 from the default input device (sounddevice), passed to `on_block`.

    A machine without a microphone (or without PortAudio) raises KobaError in one line when opened.
    """

    def __init__(self, on_block: Callable[[np.ndarray], None], device: str | int | None = None,
                 block_seconds: float = 0.03):
        self.on_block = on_block
        self.device = None if device in (None, "") else device
        self.block_seconds = block_seconds
        self.stream = None

    def start(self) -> None:
        try:
            import sounddevice

            info = sounddevice.query_devices(self.device, kind="input")
            rate, stream = int(info["default_samplerate"]), AudioStream()
            self.stream = sounddevice.InputStream(
                device=self.device, channels=1, samplerate=rate, dtype="int16",
                blocksize=int(rate * self.block_seconds),
                callback=lambda block, frames, t, status: self.on_block(stream.convert(block[:, 0], rate)))
            self.stream.start()
        except Exception as exc:  # no PortAudio, no device, device busy: all mean "no microphone"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KobaError(f"no microphone available ({reason})") from None

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            self.stream = None
