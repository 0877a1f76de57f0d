"""Acoustic echo cancellation: the robot's own voice, as the room brings it back to the microphone, subtracted.

The robot knows what its loudspeaker plays (the reference x); the microphone hears d = h * x + near-end (a person,
noise), where h is the unknown echo path (loudspeaker, room, microphone, and the sound cards' buffering delay).
An adaptive FIR filter w estimates h; the output is the error e = d - w * x, i.e. the near end with the echo removed.

Implemented from the equations of:
- J.-S. Soo and K. K. Pang, "Multidelay block frequency domain adaptive filter", IEEE Trans. ASSP 38(2), 1990 (MDF):
  the L-tap filter is cut into K = L / N partitions of N taps; with a block of N samples and FFTs of 2N (overlap-save)
  the echo estimate of block m is   Y(m) = sum_k W_k(m) X(m - k),   y(m) = last N samples of IFFT(Y(m)),
  where X(m) = FFT([x of block m-1, x of block m]); the error spectrum is E(m) = FFT([0_N, e(m)]) and each
  partition moves along its (gradient-constrained) normalised gradient
      W_k(m+1) = W_k(m) + FFT([first N of IFFT(mu(m) . conj(X(m-k)) . E(m) / (P(m) + delta)), 0_N])
  with P(f) the far-end power per frequency bin over the whole tail (sum_k |X(m-k)|^2): the per-bin normalisation
  makes the filter converge about as fast in every bin whatever the colour of speech.
- J.-M. Valin, "On adjusting the learning rate in frequency domain echo cancellation with double-talk", IEEE Trans.
  ASLP 15(3), 2007: the step is set per bin to the optimal one, the ratio of the residual echo to the error,
      mu_opt(f) = min(eta . |Y(f)|^2 / |E(f)|^2, mu_max),
  where eta, the leakage (how much of the echo estimate is still wrong), is the regression coefficient of the
  error's power on the echo estimate's power (their mean-removed power spectra, accumulated with a smoothing that
  itself slows down when the error is large against the echo estimate). A person speaking over the robot makes
  |E|^2 large, so the step falls and the filter does not learn the person's voice: no separate double-talk
  detector is needed. Until the filter has learnt enough for eta to mean something, the step is
  mu_max . min(1, S_x / S_e) per block (far-end against error energy; double talk makes S_e large).
  Two additions of this implementation, both measured on the bench's rooms: eta from the power regression runs
  low (x4 here), and the per-bin step has a floor from the time domain, the squared correlation of the error with
  the echo estimate, rho^2 = (e.y)^2 / (|e|^2 |y|^2): echo not yet removed is correlated with its estimate, a
  person's voice is not.
- J. Benesty and S. L. Gay, "An improved PNLMS algorithm", Proc. IEEE ICASSP 2002 (IPNLMS), applied per partition:
  the step of partition k is shared out as g_k = 1/2 + (K/2) ||W_k|| / sum_j ||W_j|| (their k_l with alpha = 0,
  scaled to average 1: half uniform, half in proportion to the partition's weight norm), and the normalisation is
  their x^T G x per bin, P(f) = sum_k g_k |X(m-k)|^2 (uniform shares give the MDF's P above). A room's echo path is
  strongest in its first partitions, which then converge faster (a 1.5 s head start on the bench's speech). The
  normalisation by the share-weighted power matters: after a pause longer than the tail all the far-end power is in
  the newest partition, and with the plain sum a path whose weight is there (a loudspeaker near the microphone)
  took up to (1 + K)/2 times the normalised step and diverged at every sentence's start.

Other guards: a block where the microphone or the reference saturates (near int16 full scale) is cancelled but not
learnt from (the echo path is not linear there) - a clipped reference is otherwise fine, since what the loudspeaker
plays is the clipped signal; non-finite or exploding weights, or an output louder than the microphone for a long
run of blocks, reset the filter. The filter length (`tail_ms`) must cover the room's reverberation plus the
unknown delay between the reference's timestamps and the sound (sound card output/input buffers, tens of ms):
that delay only shifts the echo path inside the filter.

What it has learnt can be kept between runs (`save(path)` / `load(path)`, or `state_dict()` / `load_state_dict(d)`):
the partition spectra W and the step control's state (the leakage estimate and its regression, the per-bin means,
whether the filter has adapted), with the settings they only make sense with (rate, block, partitions). The room and
loudspeaker rarely change between runs, so a restarted node cancels from its first sentence instead of after about
two. A state of other settings, with NaN/inf or wrong shapes, or a damaged file is refused in one line (KobaError)
and the canceller is left as it was. `converged` says when the path is worth keeping: it has adapted and, over at
least 2 s of the robot's voice since the last reset or load, the error is 6 dB under the microphone (a running
estimate of the ERLE; a person speaking over the robot only lowers it).

Cost: per block of N samples, 4 FFTs of 2N points plus 2K for the gradient constraint, all vectorised over the
partitions (bench/echo_cancellation.py measures seconds of CPU per second of audio).

Not done: Speex's second (background) filter, residual-echo suppression (a post-filter), comfort noise, clock
drift between the loudspeaker and microphone clocks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError, reason

FULL_SCALE = 32768.0
SATURATED = 32000          # |sample| at or above this: the block is not learnt from
STATE_VERSION = 1
CONVERGED_DB = 6.0         # `converged`: the running ERLE estimate at least this...
CONVERGED_S = 2.0          # ...over at least this much of the robot's voice since the last reset or load


class EchoCanceller:
    """`process(mic, reference)` -> the microphone with the echo of `reference` removed (int16, same length).

    Blocks of any length are taken; inside, the filter runs on blocks of `block` samples, so the output is
    `latency` (= `block`) samples late: its first `block` samples are zeros."""

    def __init__(self, rate: int = 16000, block: int = 256, tail_ms: float = 250.0, mu_max: float = 1.0):
        if not 4000 <= int(rate) <= 96000:
            raise KobaError(f"echo canceller: rate must be 4000..96000 Hz, got {rate}")
        if int(block) < 16 or int(block) & (int(block) - 1):
            raise KobaError(f"echo canceller: block must be a power of two >= 16, got {block}")
        if not 0 < float(tail_ms) <= 2000:
            raise KobaError(f"echo canceller: tail_ms must be in (0, 2000], got {tail_ms}")
        if not 0 < float(mu_max) <= 1:   # a normalised step above 1 overshoots; above 2 it diverges
            raise KobaError(f"echo canceller: mu_max must be in (0, 1], got {mu_max}")
        self.rate, self.block, self.mu_max = int(rate), int(block), float(mu_max)
        self.partitions = max(1, int(np.ceil(float(tail_ms) * self.rate / 1000.0 / self.block)))
        self.tail_ms = self.partitions * self.block * 1000.0 / self.rate
        self.latency = self.block
        self.mu_start = self.mu_max   # the step before the leakage estimate is trusted
        self.gain = 4.0   # eta from the power regression runs low (residual echo is not all in phase with Y)
        self.beta0 = min(0.5, 2.0 * self.block / self.rate)    # the leakage's fastest smoothing rate per block
        self.reset()

    # --- state ---------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the echo path and all buffered audio."""
        self.x_last = np.zeros(self.block)                       # the previous reference block
        self.mic_in = np.zeros(0)                                # samples waiting for a whole block
        self.ref_in = np.zeros(0)
        self.out = np.zeros(self.block, dtype=np.int16)          # processed, not yet returned (the latency)
        self.resets = 0
        self._forget_path()

    def _forget_path(self) -> None:
        """The filter and its step control from scratch (the divergence guard; the audio buffers are kept)."""
        n, k = self.block, self.partitions
        self.W = np.zeros((k, n + 1), dtype=np.complex128)       # partition spectra of the filter
        self.X = np.zeros((k, n + 1), dtype=np.complex128)       # X(m - k), newest first
        self.X_power = np.zeros((k, n + 1))                      # |X(m - k)|^2
        self.mean_E = np.zeros(n + 1)                            # running means of |E|^2 and |Y|^2 per bin
        self.mean_Y = np.zeros(n + 1)
        self.R_EY, self.R_YY = 0.0, 0.0                          # leakage regression (Valin 2007)
        self.eta = 0.25                                          # leakage estimate
        self.adapted = False
        self.adapt_sum = 0.0
        self.freeze = 0                                          # blocks left not to learn (saturation)
        self.worse = 0                                           # consecutive blocks the output beat the mic
        self.blocks = 0
        self._forget_level()

    def _forget_level(self) -> None:
        """The running ERLE estimate (what `converged` reads): smoothed mic and error energies while the robot plays."""
        self.far_blocks = 0
        self.level_mic, self.level_err = 0.0, 0.0

    @property
    def erle_db(self) -> float:
        """Running estimate of the echo return loss enhancement (mic over error energy while the far end plays, about
        2 s of smoothing); 0 before the far end has played since the last reset or load."""
        if not self.far_blocks or self.level_err <= 0:
            return 0.0
        return float(10 * np.log10(max(self.level_mic, 1e-20) / self.level_err))

    @property
    def converged(self) -> bool:
        """Whether the echo path is worth keeping (see the module's docstring)."""
        return (self.adapted and self.far_blocks * self.block >= CONVERGED_S * self.rate
                and self.erle_db >= CONVERGED_DB)

    def impulse_response(self) -> np.ndarray:
        """The filter's estimate of the echo path, `partitions * block` taps (float, mic units per reference unit)."""
        taps = np.fft.irfft(self.W, axis=1)[:, :self.block]
        return taps.reshape(-1)

    # --- what it has learnt, kept between runs ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The learnt echo path and step control, with the settings they need (numpy arrays only: an .npz)."""
        return {"version": np.array(STATE_VERSION), "rate": np.array(self.rate), "block": np.array(self.block),
                "partitions": np.array(self.partitions), "W": self.W.copy(), "eta": np.array(self.eta),
                "R_EY": np.array(self.R_EY), "R_YY": np.array(self.R_YY), "mean_E": self.mean_E.copy(),
                "mean_Y": self.mean_Y.copy(), "adapted": np.array(self.adapted), "adapt_sum": np.array(self.adapt_sum)}

    def load_state_dict(self, state, source: str = "echo path") -> None:
        """Take a `state_dict()`'s echo path. Other settings, a missing or misshapen entry, NaN/inf: KobaError (one
        line), nothing changed. The audio buffers and the reference history are kept (they are this run's)."""
        n, k = self.block, self.partitions

        def get(name: str, shape: tuple, kinds: str) -> np.ndarray:
            if name not in state:
                raise KobaError(f"echo canceller: {source} has no {name!r}")
            a = np.asarray(state[name])
            if a.shape != shape or a.dtype.kind not in kinds:
                raise KobaError(f"echo canceller: {source}: {name} is {a.dtype} {a.shape}, expected shape {shape}")
            if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                raise KobaError(f"echo canceller: {source}: {name} contains NaN or infinite values")
            return a

        version = int(get("version", (), "iu"))
        if version != STATE_VERSION:
            raise KobaError(f"echo canceller: {source} is version {version}, expected {STATE_VERSION}")
        theirs = tuple(int(get(name, (), "iu")) for name in ("rate", "block", "partitions"))
        if theirs != (self.rate, n, k):
            raise KobaError(f"echo canceller: {source} was learnt at {theirs[0]} Hz, blocks of {theirs[1]}, "
                            f"{theirs[2]} partitions; this canceller has {self.rate} Hz, {n}, {k} (echo_tail_ms)")
        W = get("W", (k, n + 1), "c").astype(np.complex128)
        eta, r_ey, r_yy, adapt_sum = (float(get(name, (), "f")) for name in ("eta", "R_EY", "R_YY", "adapt_sum"))
        mean_E, mean_Y = (get(name, (n + 1,), "f").astype(np.float64) for name in ("mean_E", "mean_Y"))
        adapted = bool(get("adapted", (), "b"))
        taps = np.fft.irfft(W, axis=1)[:, :n]
        if not 0 <= eta <= 1 or r_yy < 0 or adapt_sum < 0 or (mean_E < 0).any() or (mean_Y < 0).any():
            raise KobaError(f"echo canceller: {source}: step control out of range (eta {eta:.3g})")
        if float(np.sqrt((taps ** 2).sum())) > 100.0:   # an echo path 40 dB louder than the loudspeaker's signal
            raise KobaError(f"echo canceller: {source}: the echo path is implausibly loud")
        self.W, self.mean_E, self.mean_Y = W, mean_E, mean_Y
        self.eta, self.R_EY, self.R_YY, self.adapted, self.adapt_sum = eta, r_ey, r_yy, adapted, adapt_sum
        self.freeze = self.worse = 0
        self._forget_level()

    def save(self, path: str | Path) -> Path:
        """Write `state_dict()` to `path` (.npz), atomically: a reader sees the old file or the whole new one."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **self.state_dict())

        try:
            return write_atomically(path, write)
        except OSError as exc:
            raise KobaError(f"echo canceller: cannot write {path}: {reason(exc)}") from None

    def load(self, path: str | Path) -> None:
        """Take the echo path saved in `path` (see `load_state_dict`); a missing or damaged file: KobaError."""
        try:
            z = np.load(path, allow_pickle=False)
            if not hasattr(z, "files"):
                raise ValueError("an .npy array, not an .npz archive")
            with z:
                state = {name: z[name] for name in z.files}
        except FileNotFoundError:
            raise KobaError(f"echo canceller: no echo path file {path}") from None
        except Exception as exc:  # noqa: BLE001 - a damaged archive fails in zipfile, zlib, numpy's format reader...
            raise KobaError(f"echo canceller: {path} is not a readable echo path file ({reason(exc)})") from None
        self.load_state_dict(state, source=str(path))

    # --- input checks ----------------------------------------------------------------------------------------------
    @staticmethod
    def _check(name: str, samples) -> np.ndarray:
        a = np.asarray(samples)
        if a.ndim != 1:
            raise KobaError(f"echo canceller: {name} must be one channel (1-D), got shape {a.shape}")
        if a.dtype != np.int16:
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise KobaError(f"echo canceller: {name} contains NaN or infinite samples")
            raise KobaError(f"echo canceller: {name} must be int16 samples, got {a.dtype}")
        return a

    # --- processing --------------------------------------------------------------------------------------------------
    def process(self, mic, reference) -> np.ndarray:
        """The microphone block with the echo removed, `latency` samples late. `reference` is what the loudspeaker
        played over the same samples (zeros when it played nothing). Bad input: KobaError, state untouched."""
        mic = self._check("mic", mic)
        reference = self._check("reference", reference)
        if len(mic) != len(reference):
            raise KobaError(f"echo canceller: mic and reference lengths differ ({len(mic)} != {len(reference)})")
        if len(mic) == 0:
            raise KobaError("echo canceller: empty block")
        self.mic_in = np.concatenate([self.mic_in, mic.astype(np.float64)])
        self.ref_in = np.concatenate([self.ref_in, reference.astype(np.float64)])
        n = self.block
        mic_in, ref_in = self.mic_in, self.ref_in
        whole = len(mic_in) // n * n
        done = [self.out]
        for i in range(0, whole, n):
            done.append(self._block(mic_in[i:i + n], ref_in[i:i + n]))
        self.mic_in, self.ref_in = mic_in[whole:], ref_in[whole:]
        out = np.concatenate(done)
        self.out = out[len(mic):]
        return out[:len(mic)]

    def _block(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        n = self.block
        self.blocks += 1
        saturated = bool(np.max(np.abs(d)) >= SATURATED or np.max(np.abs(x)) >= SATURATED)
        if not x.any() and not self.x_last.any() and not self.X_power.any():
            return np.clip(np.round(d), -32768, 32767).astype(np.int16)   # nothing played for a whole tail
        d, x = d / FULL_SCALE, x / FULL_SCALE
        Xm = np.fft.rfft(np.concatenate([self.x_last, x]))
        self.x_last = x
        self.X = np.roll(self.X, 1, axis=0)
        self.X_power = np.roll(self.X_power, 1, axis=0)
        self.X[0], self.X_power[0] = Xm, Xm.real ** 2 + Xm.imag ** 2
        Y = np.einsum("kf,kf->f", self.W, self.X)
        y = np.fft.irfft(Y)[n:]
        e = d - y
        # While the filter is still wrong (the first blocks of a session) it can add more than it removes: a block
        # whose output would be louder than the microphone passes the microphone instead.
        S_d, S_e = float(d @ d), float(e @ e)
        out = np.clip(np.round((e if S_e <= S_d else d) * FULL_SCALE), -32768, 32767).astype(np.int16)

        # Energies of the block: mic, error, echo estimate, far end.
        S_y, S_x = float(y @ y), float(x @ x)
        E = np.fft.rfft(np.concatenate([np.zeros(n), e]))
        Yp = np.fft.rfft(np.concatenate([np.zeros(n), y]))
        P_E = E.real ** 2 + E.imag ** 2
        P_Y = Yp.real ** 2 + Yp.imag ** 2

        # Divergence guard: an output louder than the mic for a long run means the filter is wrong.
        self.worse = self.worse + 1 if S_e > 2.0 * S_d + n * 1e-7 else 0
        if self.worse >= 50 or not np.isfinite(S_e) or S_y > 1e4 * (S_d + n * 1e-6):
            self.resets += 1
            self._forget_path()
            return np.clip(np.round(d * FULL_SCALE), -32768, 32767).astype(np.int16)

        if S_x > n * 1e-6 and not saturated:   # the running ERLE estimate (`converged`), about 2 s of smoothing
            a = min(1.0, self.block / (2.0 * self.rate))
            self.far_blocks += 1
            self.level_mic += a * (S_d - self.level_mic)
            self.level_err += a * (S_e - self.level_err)

        if saturated:
            self.freeze = self.partitions + 1
        if self.freeze:
            self.freeze -= 1
            return out

        # Leakage eta (Valin 2007): regression of the error's power fluctuations on the echo estimate's; its
        # smoothing rate falls when the error is large against the echo estimate (double talk).
        self.mean_E += 0.05 * (P_E - self.mean_E)
        self.mean_Y += 0.05 * (P_Y - self.mean_Y)
        dE, dY = P_E - self.mean_E, P_Y - self.mean_Y
        rate = self.beta0 * min(1.0, S_y / (S_e + 1e-10))
        self.R_EY = (1 - rate) * self.R_EY + rate * float(dE @ dY)
        self.R_YY = (1 - rate) * self.R_YY + rate * float(dY @ dY)
        if self.R_YY > 1e-12:
            self.eta = float(np.clip(self.R_EY / self.R_YY, 0.0, 1.0))

        # The step, per bin: Valin's mu_opt = residual echo / error, the residual echo taken as eta |Y|^2, with the
        # time-domain floor rho^2 (see the module's docstring).
        S_ey = float(e @ y)
        rer = min(max(self.eta * S_y / (S_e + 1e-10), S_ey * S_ey / (S_e * S_y + 1e-20)), 0.5)
        if not self.adapted:
            mu_block = self.mu_start * min(1.0, S_x / (S_e + 1e-10)) if S_x > n * 1e-6 else 0.0
            mu = np.full(n + 1, mu_block)
            self.adapt_sum += mu_block
            if self.adapt_sum > self.partitions and rer > 0.03:
                self.adapted = True
        else:
            share = np.minimum(self.gain * self.eta * P_Y / (P_E + 1e-10), 1.0)
            mu = self.mu_max * np.minimum(0.7 * share + 0.6 * rer, 1.0)

        # Proportionate share of the step per partition (IPNLMS-style; half of it uniform; averages 1).
        size = np.sqrt((self.W.real ** 2 + self.W.imag ** 2).sum(axis=1))
        share = 0.5 + 0.5 * self.partitions * size / (size.sum() + 1e-12) if size.any() else np.ones(self.partitions)
        # Normalised, gradient-constrained update of every partition (Soo & Pang 1990), normalised as IPNLMS does by
        # the share-weighted far-end power: by the plain sum, a sentence after a pause longer than the tail (all the
        # power in the newest partition) that meets a path whose weight is in that partition took up to (1 + K) / 2
        # times the normalised step there, and diverged (a loudspeaker near the microphone).
        power = np.einsum("k,kf->f", share, self.X_power)
        delta = 1e-6 * n + 1e-3 * float(self.X_power.sum(axis=0).mean())
        G = self.X.conj() * (E * mu / (power + delta))[None, :] * share[:, None]
        g = np.fft.irfft(G, axis=1)[:, :n]
        self.W += np.fft.rfft(np.concatenate([g, np.zeros_like(g)], axis=1), axis=1)
        return out
