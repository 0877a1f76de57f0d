"""Keyboard feedback: which key means what, stamped with the moment the key was pressed.

The mapping and the stamping are plain functions (tested without a terminal); read_keys() is the only part that
needs a real TTY (raw mode via termios), used by keyboard_feedback_node and `koba feedback --keyboard`.
"""
from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

GOOD_KEYS = frozenset("+=gGyY1")   # '+' (and '=' on the same key), g(ood), y(es), 1
BAD_KEYS = frozenset("-_bBnN0")    # '-', b(ad), n(o), 0
QUIT_KEYS = frozenset("qQ\x03\x04")  # q, Ctrl-C, Ctrl-D
ESC = "\x1b"


@dataclass(frozen=True)
class KeyFeedback:
    value: float      # +1 good, -1 bad
    stamp: float      # when the key went down (the clock passed to key_feedback)
    key: str


def key_value(key: str) -> float | None:
    """+1 for a good key, -1 for a bad key, None for any other key."""
    if key in GOOD_KEYS:
        return 1.0
    if key in BAD_KEYS:
        return -1.0
    return None


def key_feedback(key: str, pressed_at: float) -> KeyFeedback | None:
    value = key_value(key)
    return None if value is None else KeyFeedback(value, float(pressed_at), key)


def split_keys(data: str) -> list[str]:
    """The keys in what one read of the terminal returned: its characters, except that a terminal's escape sequences
    are dropped whole: CSI (ESC [ parameters, final byte 0x40-0x7E: arrows, Home, F5 = ESC [ 1 5 ~, Ctrl+Up =
    ESC [ 1 ; 5 A) and SS3 (ESC O x: F1-F4, arrows in application mode). Taken byte by byte their '1', '0', ';' ...
    were keys, so F5 or Ctrl+Up sent +1. An unfinished sequence at the end is dropped; a lone ESC stays a key, as
    before (it maps to nothing). read_keys waits a moment for an unfinished sequence's rest (split_escapes)."""
    keys, rest = split_escapes(data)
    return keys + ([ESC] if rest == ESC else [])


def split_escapes(data: str) -> tuple[list[str], str]:
    """(keys, an escape sequence left unfinished at the end of `data`, or "")."""
    keys, i = [], 0
    while i < len(data):
        if data[i] != ESC:
            keys.append(data[i])
            i += 1
            continue
        introducer = data[i + 1:i + 2]
        if introducer == "":
            return keys, data[i:]
        if introducer == "[":
            end = i + 2
            while end < len(data) and not "\x40" <= data[end] <= "\x7e":
                end += 1
            if end >= len(data):
                return keys, data[i:]
            i = end + 1   # past the final byte
        elif introducer == "O":
            if i + 2 >= len(data):
                return keys, data[i:]
            i += 3
        else:
            keys.append(ESC)   # a lone ESC, then another key
            i += 1
    return keys, ""


# How long an unfinished escape sequence waits for its rest (a terminal writes one in one go, but over ssh it can
# come in two reads; curses' ESCDELAY plays the same part).
ESCAPE_WAIT_S = 0.05


def read_keys(fd: int, clock: Callable[[], float] = time.time, stop=None) -> Iterator[tuple[str, float]]:
    """(key, time it was read) from a terminal file descriptor in raw mode, until a quit key or stop.is_set()."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    # TCSANOW: the default (TCSAFLUSH) discards keys typed before this call, e.g. while `koba feedback --keyboard`
    # waited for a learner to subscribe; switching off line mode this way hands them over instead.
    tty.setcbreak(fd, termios.TCSANOW)
    pending, pressed_at = "", 0.0   # an escape sequence whose rest has not been read yet
    try:
        while not (stop and stop.is_set()):
            ready, _, _ = select.select([fd], [], [], ESCAPE_WAIT_S if pending else 0.1)
            if not ready:
                if pending == ESC:   # no rest came: a lone ESC, a key (it maps to nothing)
                    yield ESC, pressed_at
                pending = ""         # a part of a sequence whose rest never came is dropped
                continue
            if not pending:
                pressed_at = clock()  # stamp first: the person reacted when the key went down, not when we got to it
            # All that is waiting, not one byte: an escape sequence must be seen whole to be dropped.
            keys, pending = split_escapes(pending + os.read(fd, 1024).decode(errors="replace"))
            for key in keys:
                if key in QUIT_KEYS:
                    return
                yield key, pressed_at
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
