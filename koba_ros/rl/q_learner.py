"""Q from environment reward: DQN (Mnih et al. 2015) with experience replay and a target network.

Loss (Mnih et al. 2015, Eq. 2, with the Huber loss): L = huber(Q(s, a) - y), y = r + gamma * (1 - done) *
max_a' Q_target(s', a'); Q_target copied from Q every `target_every` steps. `done` is true termination only (a
time-limit cut is not an end).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.rl.checks import number, whole
from koba_ros.rl.networks import StateMLP
from koba_ros.rl.replay import transition_buffer


@dataclass(frozen=True)
class QConfig:
    hidden: int = 64              # MLP width
    lr: float = 1e-3              # Adam learning rate
    gamma: float = 0.9            # discount (0.9 keeps the gap between a step forward and a wall bump wide)
    batch: int = 32               # minibatch size
    buffer: int = 20000           # replay capacity
    learn_start: int = 100        # transitions stored before the first update
    train_every: int = 1          # environment steps per gradient step
    target_every: int = 250       # steps between target-network copies

    def __post_init__(self):
        whole(self, "q.", "hidden", "batch", "buffer", "train_every", "target_every")
        whole(self, "q.", "learn_start", low=0)
        number(self, "q.", "lr", low_open=True)
        number(self, "q.", "gamma", high=1.0)


def huber(error: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean Huber loss (delta 1) and its gradient with respect to the error."""
    a = np.abs(error)
    loss = np.where(a <= 1.0, 0.5 * error ** 2, a - 0.5).mean()
    return float(loss), np.clip(error, -1.0, 1.0) / len(error)


class QLearner:
    def __init__(self, n_states: int, n_actions: int, config: QConfig, rng: np.random.Generator,
                 codes: np.ndarray | None = None):
        self.config, self.rng = config, rng
        self.net = StateMLP(n_states, n_actions, config.hidden, config.lr, rng, codes=codes)
        self.target = StateMLP(n_states, n_actions, config.hidden, config.lr, rng, codes=codes)
        self.target.copy_from(self.net)
        self.memory = transition_buffer(config.buffer)
        self.steps = 0

    def q(self, state: int) -> np.ndarray:
        return self.net(state)[0]

    def observe(self, state, action, reward, next_state, terminated) -> float | None:
        """Store a transition and, on schedule, take one gradient step; returns the loss if it trained."""
        self.memory.add(state=state, action=action, reward=reward, next_state=next_state, done=float(terminated))
        self.steps += 1
        if self.steps % self.config.target_every == 0:
            self.target.copy_from(self.net)
        if len(self.memory) < self.config.learn_start or self.steps % self.config.train_every:
            return None
        b = self.memory.sample(self.config.batch, self.rng)
        y = b["reward"] + self.config.gamma * (1.0 - b["done"]) * self.target(b["next_state"]).max(axis=1)
        return self.net.fit(b["state"], b["action"], lambda q_sa: huber(q_sa - y))

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "target": self.target.state_dict(),
                "memory": self.memory.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.memory.load_state_dict(state["memory"])
        self.steps = int(state["steps"])
