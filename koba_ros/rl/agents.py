"""The three agents of the benchmark, as policies over two learners (Q from reward, H from the human).

- DQN:       epsilon-greedy on Q.
- TAMER:     greedy on H (Deep TAMER, Warnell et al. 2018), with a small epsilon so that it never freezes in a loop.
- DQN-TAMER: epsilon-greedy on alpha_q * Q(s, a) + alpha_h * H(s, a) (Arakawa et al. 2018, Sec. 3, Eq. 5), both
             learners trained side by side; alpha_h shrinks as the agent becomes competent: by `alpha_h_decay` every
             step and by `alpha_h_success_decay` every episode that reaches the goal.

Every agent has the same interface: act(state), observe(...), feedback(value, credits), state_dict().
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.credit import Credit
from koba_ros.rl.human_reward import HConfig, HumanRewardModel
from koba_ros.rl.q_learner import QConfig, QLearner

AGENTS = ("dqn", "tamer", "dqn_tamer")


@dataclass(frozen=True)
class AgentConfig:
    q: QConfig = field(default_factory=QConfig)
    h: HConfig = field(default_factory=HConfig)
    eps_start: float = 1.0             # epsilon-greedy exploration, decayed linearly ...
    eps_end: float = 0.02              # ... to this ...
    eps_decay_steps: int = 5000        # ... over this many steps (DQN) ...
    eps_decay_steps_with_human: int = 1000  # ... or this many (DQN-TAMER: the human's guidance replaces most random
    #                                         exploration; each is the better of {1000, 5000} for its agent)
    tamer_epsilon: float = 0.02        # TAMER's constant exploration
    alpha_q: float = 1.0               # DQN-TAMER weight of Q
    alpha_h: float = 1.0               # DQN-TAMER initial weight of H
    alpha_h_decay: float = 1.0         # multiplies alpha_h every step (1: competence alone decides)
    alpha_h_success_decay: float = 0.99  # multiplies alpha_h every episode that reaches the goal


class Agent:
    """Base: exploration schedule, checkpoints, stats. Subclasses define scores() and which learners they train."""
    name = "agent"
    uses_feedback = False

    def __init__(self, n_states: int, n_actions: int, config: AgentConfig = AgentConfig(), seed: int = 0):
        self.n_states, self.n_actions, self.config = int(n_states), int(n_actions), config
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    @property
    def eps_decay_steps(self) -> int:
        return self.config.eps_decay_steps

    @property
    def epsilon(self) -> float:
        c = self.config
        return c.eps_end + (c.eps_start - c.eps_end) * max(0.0, 1.0 - self.steps / max(1, self.eps_decay_steps))

    def scores(self, state: int) -> np.ndarray:
        raise NotImplementedError

    def act(self, state: int, explore: bool = True) -> int:
        if not 0 <= int(state) < self.n_states:
            raise KobaError(f"state {state} outside 0..{self.n_states - 1}")
        if explore and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        s = self.scores(state)
        return int(self.rng.choice(np.flatnonzero(s == s.max())))  # ties broken at random

    def observe(self, state, action, reward, next_state, terminated, truncated) -> None:
        self.steps += 1

    def end_episode(self, reached_goal: bool) -> None:
        pass

    def feedback(self, value: float, credits: list[Credit]) -> None:
        pass

    @property
    def feedback_count(self) -> int:
        return 0

    def stats(self) -> dict:
        return {"steps": self.steps, "epsilon": round(self.epsilon, 4), "feedback": self.feedback_count}

    # Checkpoints: tensors and plain numbers only (torch.load(..., weights_only=True)).
    def state_dict(self) -> dict:
        return {"agent": self.name, "steps": self.steps, "n_states": self.n_states, "n_actions": self.n_actions,
                "config": _plain(asdict(self.config)), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if state.get("agent") != self.name or (state["n_states"], state["n_actions"]) != (self.n_states,
                                                                                           self.n_actions):
            raise KobaError(f"checkpoint is for {state.get('agent')} with {state.get('n_states')} states and "
                            f"{state.get('n_actions')} actions, not {self.name} with {self.n_states}/{self.n_actions}")
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]


class DQNAgent(Agent):
    name = "dqn"

    def __init__(self, n_states, n_actions, config=AgentConfig(), seed=0):
        super().__init__(n_states, n_actions, config, seed)
        self.q = QLearner(n_states, n_actions, config.q, self.rng)

    def scores(self, state):
        return self.q.q(state)

    def observe(self, state, action, reward, next_state, terminated, truncated):
        super().observe(state, action, reward, next_state, terminated, truncated)
        self.q.observe(state, action, reward, next_state, terminated)

    def state_dict(self):
        return {**super().state_dict(), "q": self.q.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.q.load_state_dict(state["q"])


class TamerAgent(Agent):
    name = "tamer"
    uses_feedback = True

    def __init__(self, n_states, n_actions, config=AgentConfig(), seed=0):
        super().__init__(n_states, n_actions, config, seed)
        self.h = HumanRewardModel(n_states, n_actions, config.h, self.rng)

    @property
    def epsilon(self):
        return self.config.tamer_epsilon

    def scores(self, state):
        return self.h.h(state)

    def observe(self, state, action, reward, next_state, terminated, truncated):
        super().observe(state, action, reward, next_state, terminated, truncated)
        self.h.step()

    def feedback(self, value, credits):
        self.h.add_feedback(value, credits)

    @property
    def feedback_count(self):
        return self.h.feedback_count

    def state_dict(self):
        return {**super().state_dict(), "h": self.h.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.h.load_state_dict(state["h"])


class DQNTamerAgent(Agent):
    name = "dqn_tamer"
    uses_feedback = True

    def __init__(self, n_states, n_actions, config=AgentConfig(), seed=0):
        super().__init__(n_states, n_actions, config, seed)
        self.q = QLearner(n_states, n_actions, config.q, self.rng)
        self.h = HumanRewardModel(n_states, n_actions, config.h, self.rng)
        self.alpha_h = config.alpha_h

    @property
    def eps_decay_steps(self):
        return self.config.eps_decay_steps_with_human

    def scores(self, state):
        return self.config.alpha_q * self.q.q(state) + self.alpha_h * self.h.h(state)

    def observe(self, state, action, reward, next_state, terminated, truncated):
        super().observe(state, action, reward, next_state, terminated, truncated)
        self.q.observe(state, action, reward, next_state, terminated)
        self.h.step()
        self.alpha_h *= self.config.alpha_h_decay

    def end_episode(self, reached_goal):
        if reached_goal:
            self.alpha_h *= self.config.alpha_h_success_decay

    def feedback(self, value, credits):
        self.h.add_feedback(value, credits)

    @property
    def feedback_count(self):
        return self.h.feedback_count

    def stats(self):
        return {**super().stats(), "alpha_h": round(self.alpha_h, 5)}

    def state_dict(self):
        return {**super().state_dict(), "q": self.q.state_dict(), "h": self.h.state_dict(), "alpha_h": self.alpha_h}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.q.load_state_dict(state["q"])
        self.h.load_state_dict(state["h"])
        self.alpha_h = float(state["alpha_h"])


def make_agent(name: str, n_states: int, n_actions: int, config: AgentConfig = AgentConfig(), seed: int = 0) -> Agent:
    classes = {"dqn": DQNAgent, "tamer": TamerAgent, "dqn_tamer": DQNTamerAgent}
    if name not in classes:
        raise KobaError(f"unknown agent {name!r}; agents: {', '.join(AGENTS)}")
    return classes[name](n_states, n_actions, config, seed)


def _plain(d: dict) -> dict:
    """Config as nested dicts of numbers (safe for weights_only checkpoints)."""
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in d.items()}
