"""Is there a voice in this stretch of audio? A run of frames whose waveform repeats at a speaking pitch.

"stop" has a vowel, and a vowel is voiced: the vocal folds make the waveform repeat every 2.5-14 ms (pitch 70-400
Hz), for tens of milliseconds on end. A burst of broadband noise (a fan starting, a door, hiss) has no such period,
though the quiet "stop" keyphrase can score on it (docs/speech.md, Session 26: 11 of 12 stops heard on noise bursts
came from it). A steady tone in the pitch range (a 100 Hz motor hum) does repeat, and no periodicity test can tell it
from a low voice.

The classic autocorrelation voicing test (Rabiner & Schafer, "Digital Processing of Speech Signals", 1978, ch. 4 and
8): the signal is low-passed at 1 kHz, where voicing lives and much broadband noise does not, and for every 10 ms hop
a 30 ms frame's normalised autocorrelation is taken over the pitch lags

    r(tau) = sum_n x[n] x[n+tau] / sqrt(sum_n x[n]^2  sum_n x[n+tau]^2),   tau = RATE/400 ... RATE/70

The frame is voiced when r peaks inside that range (a peak at its shortest lag is the slow decay of low-frequency
noise, not a period) at VOICED_R or more, and the frame is above the recogniser's dither. A vowel gives a run of
such frames; noise gives at most isolated ones, so `longest_voiced_run` is the measure.
"""
from __future__ import annotations

import numpy as np

from koba_ros.speech.audio import RATE

HOP = RATE // 100            # pocketsphinx's frame: 10 ms
FRAME = 3 * HOP              # 30 ms: at least two periods of a 70 Hz voice
MIN_LAG, MAX_LAG = RATE // 400, RATE // 70
# Chosen on a probe (session 27, review fix): over 90 noise bursts (white, pink, brown; 100-10000 rms) no two
# consecutive frames were voiced at 0.7, and espeak-ng stops by 5 voices kept runs of 6 or more frames from 20 down to
# 5 dB SNR. (Session 27's first version differenced instead of low-passing: stops at 10 dB SNR lost their voicing.)
VOICED_R = 0.7
MIN_RMS = 60.0               # int16 units: twice the recogniser's dither (NOISE_FLOOR): never voiced
LOWPASS_HZ = 1000.0
_TAPS = np.arange(-31, 32)
LOWPASS = np.sinc(2 * LOWPASS_HZ / RATE * _TAPS) * np.hamming(len(_TAPS))   # windowed-sinc FIR, unity gain at DC
LOWPASS /= LOWPASS.sum()


def voiced(samples: np.ndarray, first_frame: int = 0, last_frame: int | None = None) -> np.ndarray:
    """Per 10 ms frame in [first_frame, last_frame] (pocketsphinx frame numbers of `samples`): is it voiced?"""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("voicing wants mono samples")
    n_frames = max(0, (len(x) - FRAME) // HOP + 1)
    first = max(0, first_frame)
    last = n_frames - 1 if last_frame is None else min(last_frame, n_frames - 1)
    if last < first:
        return np.zeros(0, dtype=bool)
    margin = len(LOWPASS) // 2   # filter a little context either side, so the first frames are filtered whole
    lo, hi = first * HOP, last * HOP + FRAME
    start = max(0, lo - margin)
    low = np.convolve(x[start:hi + margin], LOWPASS, "same")[lo - start:]
    out = np.zeros(last - first + 1, dtype=bool)
    for k in range(len(out)):
        raw = x[lo + k * HOP:lo + k * HOP + FRAME]
        out[k] = np.sqrt(np.mean(raw ** 2)) >= MIN_RMS and frame_is_voiced(low[k * HOP:k * HOP + FRAME])
    return out


def voiced_frames(samples: np.ndarray, first_frame: int = 0, last_frame: int | None = None) -> int:
    """How many frames in [first_frame, last_frame] are voiced."""
    return int(voiced(samples, first_frame, last_frame).sum())


def longest_voiced_run(samples: np.ndarray, first_frame: int = 0, last_frame: int | None = None) -> int:
    """The most consecutive voiced frames in [first_frame, last_frame]: a vowel's length in frames."""
    best = run = 0
    for v in voiced(samples, first_frame, last_frame):
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def frame_is_voiced(frame: np.ndarray) -> bool:
    """One low-passed frame: does its autocorrelation peak inside the pitch lags, at VOICED_R or more?"""
    d = np.asarray(frame, dtype=np.float64)
    d = d - d.mean()
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
    peak = int(r.argmax())
    return bool(0 < peak < len(r) - 1 and r[peak] >= VOICED_R)
