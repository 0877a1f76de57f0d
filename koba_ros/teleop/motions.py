"""What teleop has sent to the arm and the gripper, and when the last of it ends: the robot says nothing before
then (while it talks the microphone hears nothing but an early "stop", and a stop said over its voice is not heard
at all: bench/robot_voice_false_stops.py), and a reply stands only while its motion was not replaced or stopped.
A stop heard again soon after an answered one, with no command between, is not answered again (StopReplies)."""
from __future__ import annotations

import math

from koba_ros.teleop.commands import STOP_REPEAT_S

GRIPPER_MOTION_S = 0.5   # about what the gripper takes to open or close
REPLY_MARGIN_S = 0.3     # the controller ends a little after the plan's last point


class MotionLog:
    def __init__(self):
        self.sent = {"arm": 0, "gripper": 0}   # motions sent to each, a stop included
        self.end = 0.0                         # clock time the last motion sent ends

    def send(self, now: float, arm_s: float | None = None, gripper: bool = False) -> tuple[str, int]:
        """Record an arm trajectory of `arm_s` seconds and/or a gripper command sent at `now`; returns the token of
        the motion a reply is about (the arm's when it moved)."""
        if gripper:
            self.sent["gripper"] += 1
            self.end = max(self.end, now + GRIPPER_MOTION_S + REPLY_MARGIN_S)
        if arm_s is not None:
            self.sent["arm"] += 1
            self.end = max(self.end, now + arm_s + REPLY_MARGIN_S)
        part = "arm" if arm_s is not None else "gripper"
        return part, self.sent[part]

    def stop(self, now: float, gripper: bool = False) -> None:
        """An empty trajectory was sent (and with `gripper`, the fingers' own width): they hold from now on, and what
        they were doing is replaced."""
        self.sent["arm"] += 1
        if gripper:
            self.sent["gripper"] += 1
        self.end = now

    def current(self, token: tuple[str, int] | None) -> bool:
        """Does the motion a reply is about still stand (None: a reply about no motion always does)?"""
        return token is None or self.sent[token[0]] == token[1]

    def wait(self, now: float) -> float:
        """Seconds until the last motion sent is over (0 if none runs)."""
        return max(0.0, self.end - now)


class StopReplies:
    """Which stops are answered. Every stop holds the arm again ("stop" always wins); only the reply is not repeated,
    and only when no command came between the two stops (one that did is answered: it may have started a motion) and
    the second is within `repeat_s` of the last answered one (an early "stop", then its utterance's "stop moving")."""

    def __init__(self, repeat_s: float = STOP_REPEAT_S):
        self.repeat_s = repeat_s
        self.generation = -2          # the generation of the last stop
        self.answered_at = -math.inf  # clock time a stop was last answered

    def answer(self, generation: int, now: float) -> bool:
        """A stop took command `generation` (every command that parses takes the next one) at `now`: answer it?"""
        repeat = generation == self.generation + 1 and now - self.answered_at <= self.repeat_s
        self.generation = generation
        if not repeat:
            self.answered_at = now
        return not repeat
