"""Ctrl-C or SIGTERM during `koba lm train`: finish the step, save a checkpoint, stop; a second signal stops at once.

Clusters preempt a job by sending SIGTERM and, after a grace period, SIGKILL (torchrun forwards the signal to its
workers and waits for them); a person stops a run with Ctrl-C. Either way the steps since the last periodic
checkpoint should not be lost. The handler only records the request; the training loop reads it once per step, and
under torchrun the ranks agree on it in the step's loss all-reduce (distributed.mean_and_any), so all of them stop
after the same step and take part in the same checkpoint's collectives.
"""
from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager: while inside, SIGINT/SIGTERM set `requested` (the signal's name) instead of ending the
    process; a second one raises KeyboardInterrupt. Outside the main thread (where Python delivers no signals)
    it does nothing."""

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.requested: str | None = None
        self.signum = 0
        self._previous: dict = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, _frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested, self.signum = signal.Signals(signum).name, signum
        if self.announce:
            print(f"koba lm train: {self.requested}: stopping after this step, with a checkpoint (again: stop now)",
                  file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum if self.requested else 0
