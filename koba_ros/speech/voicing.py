"""Is there a voice in this stretch of audio? Frames whose waveform repeats at a speaking pitch.

"stop" has a vowel, and a vowel is voiced: the vocal folds make the waveform repeat every 2.5-14 ms (pitch 70-400
Hz). A burst of noise (a fan starting, a door, hiss) has no such period, though the quiet "stop" keyphrase can
score on it (docs/speech.md, Session 26: 11 of 12 stops heard on noise bursts came from it).

Per 10 ms hop, a 30 ms frame is first-differenced (pre-emphasis: the spectrum of pink or brown noise, dominated by
low frequencies, is flattened, so its slowly decaying autocorrelation cannot pass for a period), and its
normalised autocorrelation is taken over the pitch lags:

    r(tau) = sum_n x[n] x[n+tau] / sqrt(sum_n x[n]^2  sum_n x[n+tau]^2),   tau = RATE/400 ... RATE/70

The frame is voiced when max_tau r(tau) >= VOICED_R and the frame is above the digital noise floor (the classic
autocorrelation voicing test, e.g. Rabiner & Schafer, "Digital Processing of Speech Signals", 1978, ch. 4/8).
"""
from __future__ import annotations

import numpy as np

from koba_ros.speech.audio import RATE

HOP = RATE // 100            # pocketsphinx's frame: 10 ms
FRAME = 3 * HOP              # 30 ms: at least two periods of a 70 Hz voice
MIN_LAG, MAX_LAG = RATE // 400, RATE // 70
# Chosen on a probe (session 27): 60 noise bursts (white, pink, brown, hum; 100-10000 rms) have no frame over 0.35
# (1 of 5880 over 0.3), and espeak-ng stops by 7 voices at 20 dB SNR keep 11 or more voiced frames at 0.4, 7 at 0.5.
VOICED_R = 0.45
MIN_RMS = 60.0               # int16 units: twice the recogniser's dither (NOISE_FLOOR): never voiced


def voiced_frames(samples: np.ndarray, first_frame: int = 0, last_frame: int | None = None) -> int:
    """How many 10 ms frames in [first_frame, last_frame] (pocketsphinx frame numbers of `samples`) are voiced."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("voiced_frames wants mono samples")
    n_frames = max(0, (len(x) - FRAME) // HOP + 1)
    last = n_frames - 1 if last_frame is None else min(last_frame, n_frames - 1)
    count = 0
    for f in range(max(0, first_frame), last + 1):
        frame = x[f * HOP:f * HOP + FRAME]
        if np.sqrt(np.mean(frame ** 2)) < MIN_RMS:
            continue
        count += frame_is_voiced(frame)
    return count


def frame_is_voiced(frame: np.ndarray) -> bool:
    d = np.diff(frame - frame.mean())
    n = len(d)
    if n <= MAX_LAG:
        raise ValueError(f"a frame of {len(frame)} samples is too short for a {MAX_LAG}-sample lag")
    lags = np.arange(MIN_LAG, MAX_LAG + 1)
    products = np.correlate(d, d, "full")[n - 1 + lags]              # sum_n d[n] d[n+lag]
    energy = np.cumsum(d * d)
    head = energy[n - 1 - lags]                                       # sum of d[:n-lag]^2
    tail = energy[-1] - energy[lags - 1]                              # sum of d[lag:]^2
    denom = np.sqrt(head * tail)
    r = np.divide(products, denom, out=np.zeros_like(products), where=denom > 0)
    return bool(r.max() >= VOICED_R)
