"""Credit assignment of late human feedback to the steps the person was reacting to.

Two models of what the person reacts to, both weighing steps by the reaction-delay distribution (delay.py):
- "interval" (Deep TAMER, Warnell et al. 2018, Eq. 2): to whatever is on screen; a step shown during
  [t_j, t_{j+1}) receives from feedback given at t_f the weight
      w_j = P(t_f - t_{j+1} <= delay <= t_f - t_j) = F(t_f - t_j) - F(t_f - t_{j+1}).
  Right for smooth video (Atari frames); for discrete moves it splits each reaction between two steps.
- "onset" (default): to the moment a move happens (a maze step, a taxi pick-up); the weight is the delay density
  at the step's onset, normalised over the steps in the window:
      w_j = f(t_f - t_j) / sum_i f(t_f - t_i).
The window is the delay's support (0.2-4 s by default). Steps with w_j > 0 become samples (s_j, a_j, h, w_j) for
the human-reward model H.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.delay import Delay

CREDIT_MODELS = ("onset", "interval")
DEFAULT_DELAY = Delay("gamma", 0.2, 4.0, 0.5)  # window 0.2-4 s, peaked at a typical 0.5 s reaction


@dataclass
class ShownStep:
    state: int
    action: int
    start: float               # when the step's result appeared (seconds, the learner's clock)
    end: float = math.inf      # when the next step replaced it (inf: still on screen)


@dataclass(frozen=True)
class Credit:
    state: int
    action: int
    weight: float


class CreditAssigner:
    def __init__(self, delay: Delay = DEFAULT_DELAY, model: str = "onset", min_weight: float = 1e-3,
                 history: int = 1000):
        if model not in CREDIT_MODELS:
            raise KobaError(f"credit model must be one of {', '.join(CREDIT_MODELS)}, got {model!r}")
        self.delay, self.model, self.min_weight = delay, model, float(min_weight)
        self.steps: deque[ShownStep] = deque(maxlen=history)

    def begin(self, state: int, action: int, start: float) -> None:
        """A new step is on screen from `start`; the previous one ends there."""
        self.end(start)
        self.steps.append(ShownStep(int(state), int(action), float(start)))

    def end(self, time: float) -> None:
        """The step on screen stops being shown (a new step, or the learner pauses)."""
        if self.steps and self.steps[-1].end == math.inf:
            self.steps[-1].end = float(time)

    @property
    def last_time(self) -> float | None:
        return self.steps[-1].start if self.steps else None

    def assign(self, feedback_time: float) -> list[Credit]:
        """Steps that feedback given at feedback_time refers to, with their weights (empty if none)."""
        window = []
        for step in reversed(self.steps):
            if feedback_time - min(step.end, feedback_time) > self.delay.hi:
                break  # this and older steps lie entirely outside the window
            window.append(step)
        window.reverse()
        if not window:
            return []
        starts = np.array([s.start for s in window])
        if self.model == "interval":
            ends = np.minimum([s.end for s in window], feedback_time)
            weights = self.delay.cdf(feedback_time - starts) - self.delay.cdf(feedback_time - ends)
        else:
            density = self.delay.pdf(feedback_time - starts)
            weights = density / density.sum() if density.sum() > 0 else density
        return [Credit(s.state, s.action, float(w)) for s, w in zip(window, weights, strict=True)
                if w >= self.min_weight]
