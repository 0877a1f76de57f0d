"""The sentences tts_node has still to say, each with the time it came (ns), and what a stop drops of them.

A stop (a stop command on /speech/utterance, /teleop/command or /instruction) drops the sentences still waiting: said
after it they were about what no longer holds, and kept the robot talking, hearing only early stops. The sentence
playing is finished (its echo-cancellation reference is already out) and the stop's own reply is said. A stop within
STOP_REPEAT_S of an earlier one, with no teleop command between, drops only what came before that one: teleop_node
answers only the first of such stops, and that answer must not be dropped as older than the second.
"""
from __future__ import annotations

import contextlib
import queue

from koba_ros.errors import KobaError
from koba_ros.teleop.commands import STOP_REPEAT_S, Stop, parse_command


class ReplyQueue:
    """Sentences to say, in order, for one worker (`get`); a stop (`on_command`) drops those that came before it."""

    def __init__(self, maxsize: int = 20, repeat_s: float = STOP_REPEAT_S):
        self.repeat_s = repeat_s
        self.stop_cutoff = None   # ns: the cutoff of the last stop that set its own (on_command)
        self._items: queue.Queue[tuple[int, str] | None] = queue.Queue(maxsize=maxsize)   # None: closed

    @property
    def queue(self):
        """The waiting (t_ns, text) items, oldest first (a look, not a way to change them)."""
        return self._items.queue

    def qsize(self) -> int:
        return self._items.qsize()

    def empty(self) -> bool:
        return self._items.empty()

    def put(self, t_ns: int, text: str) -> bool:
        """Queue `text`, which came at `t_ns`; False (and it is not queued) when the queue is full."""
        try:
            self._items.put_nowait((t_ns, text))
        except queue.Full:
            return False
        return True

    def get(self) -> str | None:
        """The next sentence to say, waiting for one; None once closed."""
        item = self._items.get()
        return None if item is None else item[1]

    def close(self) -> None:
        """Drop what waits, and end the worker once it has finished the sentence it is on (`get` returns None)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._items.get_nowait()
        self._items.put(None)

    def on_command(self, text: str, now_ns: int, stamp_ns: int | None = None, teleop: bool = True) -> int:
        """Drop the sentences that came before a stop; returns how many were dropped (0 for any other text).

        Before the stop's stamp (`stamp_ns`, when it has one: None or 0 is none), not before it reached the node
        (`now_ns`): its reply, published after it, is kept even if it overtook the stop on its way there.
        A stop within `repeat_s` of the last stop that set its own cutoff, with no teleop command between (`teleop`:
        a topic teleop_node hears too), uses that cutoff: teleop_node answers only the first stop of such a pair, and
        its reply (after the first stop, maybe before the second) is kept."""
        try:
            command = parse_command(text)
        except KobaError:
            return 0   # not a command: teleop_node takes none from it either
        if not isinstance(command, Stop):
            if teleop:
                self.stop_cutoff = None   # teleop_node answers the next stop: what came before it goes
            return 0
        cutoff = now_ns
        if stamp_ns:
            cutoff = min(cutoff, stamp_ns)
        if self.stop_cutoff is not None and 0 <= cutoff - self.stop_cutoff <= self.repeat_s * 1e9:
            cutoff = self.stop_cutoff
        else:
            self.stop_cutoff = cutoff
        waiting = []
        with contextlib.suppress(queue.Empty):
            while True:
                waiting.append(self._items.get_nowait())
        kept = [item for item in waiting if item is None or item[0] >= cutoff]
        for item in kept:   # in their order; the worker may take the first at once
            self._items.put_nowait(item)
        return len(waiting) - len(kept)
