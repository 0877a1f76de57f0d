"""What speech_node's decoding worker reads: audio chunks and the robot's speaking states, in the order they came.

- Producers (a topic callback, a microphone, the /speech/speaking callback) never block: the queue is bounded, and a
  full queue drops audio (the caller says so) but never a speaking state. A state that finds the queue full is
  delivered before the worker's next item; a state older than one delivered is void.
- Each activation's worker reads with its own token (`start`). `stop` ends that worker after its current item; a
  worker of an earlier activation, still decoding when the next one started, gets None at its next read, so two
  workers never feed one decoder.
"""
from __future__ import annotations

import queue
import threading

import numpy as np


class DecodeQueue:
    def __init__(self, maxsize: int = 500):
        self.items: queue.Queue = queue.Queue(maxsize=maxsize)
        self.lock = threading.Lock()
        self.token: object | None = None     # the current worker's (None: no worker reads)
        self.speaking, self.seq = False, 0   # the latest state and its number
        self.delivered = -1                  # the number of the latest state a worker got
        self.missed = False                  # a state found the queue full

    def start(self) -> object:
        """A new worker's token: what was queued before is dropped, and the latest speaking state comes first."""
        with self.lock:
            self.token, self.delivered = object(), -1
            try:
                while True:
                    self.items.get_nowait()
            except queue.Empty:
                pass
            self.items.put_nowait(("speaking", self.speaking, self.seq))
            return self.token

    def stop(self) -> None:
        """The current worker ends after its current item."""
        with self.lock:
            token, self.token = self.token, None
        try:
            self.items.put_nowait(token)  # wakes it if it waits
        except queue.Full:
            pass                          # it is busy: it finds its token void at its next read

    def put_audio(self, samples: np.ndarray) -> bool:
        """False when the queue is full and the chunk was dropped. With no worker (configured but inactive) audio is
        dropped at once: it used to fill the queue, only for `start` to throw it away, and read as falling behind."""
        if self.token is None:
            return True
        try:
            self.items.put_nowait(samples)
            return True
        except queue.Full:
            return False

    def put_speaking(self, speaking: bool) -> None:
        with self.lock:
            self.speaking, self.seq = bool(speaking), self.seq + 1
            if self.token is None:
                return  # the next worker gets it first
            try:
                self.items.put_nowait(("speaking", self.speaking, self.seq))
            except queue.Full:
                self.missed = True

    def get(self, token: object) -> tuple[str, object] | None:
        """The next ("audio", samples) or ("speaking", bool) for the worker holding `token`; None: it must end."""
        while True:
            with self.lock:
                if token is not self.token:
                    return None
                if self.missed:
                    self.missed, self.delivered = False, self.seq
                    return "speaking", self.speaking
            item = self.items.get()
            if isinstance(item, np.ndarray):
                return "audio", item
            if isinstance(item, tuple):
                with self.lock:
                    if item[2] > self.delivered:
                        self.delivered = item[2]
                        return "speaking", item[1]
            # a stop token (this worker's or a stale one) or a void state: read on; the check above decides
