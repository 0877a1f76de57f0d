"""H from human feedback: the Deep TAMER human-reward model (Warnell et al. 2018, Eq. 3-4).

Each feedback h given at t_f is credited to the steps shown before it (credit.py, weights w_j); the samples
(s_j, a_j, h, w_j) go to a feedback replay buffer and H is fit by the weighted squared loss
    L = sum_j w_j (H(s_j, a_j) - h)^2 / sum_j w_j
once on the new samples when feedback arrives, and on a minibatch from the buffer every `train_every` steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.rl.checks import number, whole
from koba_ros.rl.credit import Credit
from koba_ros.rl.networks import StateMLP
from koba_ros.rl.replay import feedback_buffer


@dataclass(frozen=True)
class HConfig:
    hidden: int = 64              # MLP width
    lr: float = 1e-3              # Adam learning rate
    batch: int = 32               # minibatch from the feedback buffer
    buffer: int = 10000           # feedback replay capacity (credited steps)
    train_every: int = 1          # environment steps per replayed gradient step (Deep TAMER replays continually)

    def __post_init__(self):
        whole(self, "h.", "hidden", "batch", "buffer", "train_every")
        number(self, "h.", "lr", low_open=True)


def weighted_squared(h: np.ndarray, value: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    total = max(float(weight.sum()), 1e-8)
    error = h - value
    return float((weight * error ** 2).sum() / total), 2.0 * weight * error / total


class HumanRewardModel:
    def __init__(self, n_states: int, n_actions: int, config: HConfig, rng: np.random.Generator,
                 codes: np.ndarray | None = None):
        self.config, self.rng = config, rng
        self.net = StateMLP(n_states, n_actions, config.hidden, config.lr, rng, codes=codes)
        self.memory = feedback_buffer(config.buffer)
        self.steps = 0
        self.feedback_count = 0

    def h(self, state: int) -> np.ndarray:
        return self.net(state)[0]

    def add_feedback(self, value: float, credits: list[Credit]) -> None:
        if not credits:
            return
        self.feedback_count += 1
        for c in credits:
            self.memory.add(state=c.state, action=c.action, value=value, weight=c.weight)
        self._fit(np.array([c.state for c in credits]), np.array([c.action for c in credits]),
                  np.full(len(credits), float(value)), np.array([c.weight for c in credits]))

    def step(self) -> None:
        """Called once per environment step: replay the feedback buffer on schedule."""
        self.steps += 1
        if len(self.memory) and self.steps % self.config.train_every == 0:
            b = self.memory.sample(self.config.batch, self.rng)
            self._fit(b["state"], b["action"], b["value"], b["weight"])

    def _fit(self, states, actions, value, weight) -> float:
        return self.net.fit(states, actions, lambda h: weighted_squared(h, value, weight))

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "memory": self.memory.state_dict(), "steps": self.steps,
                "feedback_count": self.feedback_count}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.memory.load_state_dict(state["memory"])
        self.steps, self.feedback_count = int(state["steps"]), int(state["feedback_count"])
