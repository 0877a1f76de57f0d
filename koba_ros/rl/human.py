"""A simulated human observer with the five factors of DQN-TAMER (Arakawa et al. 2018, Sec. 4.1).

1. binary:            feedback is +1 / -1 only (binary=False: a graded value in [-1, 1], 0 for a neutral step)
2. delay:             the reaction comes `delay` seconds after the step was shown (a Delay distribution)
3. stochasticity:     feedback is given only with probability p_feedback, and with the wrong sign with p_wrong
4. unsustainability:  p_feedback halves every `half_life` observed steps (people tire); 0 = never
5. natural reaction:  the person judges what they see: did the step bring the agent closer to the goal along the
                      shortest path (judge="shortest_path"), or, for the maze, closer as the crow flies ignoring
                      walls (judge="straight_line", a naive watcher)

Time is whatever clock the caller passes: simulated seconds in the benchmark, ROS time in simulated_human_node.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, fields

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.delay import Delay


@dataclass(frozen=True)
class HumanConfig:
    p_feedback: float = 0.5
    p_wrong: float = 0.1
    half_life: float = 2000.0
    delay: str = "uniform:0.2:1.0"
    binary: bool = True
    judge: str = "shortest_path"

    def __post_init__(self):
        if not 0.0 <= self.p_feedback <= 1.0 or not 0.0 <= self.p_wrong <= 1.0:
            raise KobaError(f"p_feedback and p_wrong must lie in [0, 1], got {self.p_feedback}, {self.p_wrong}")
        if not self.half_life >= 0:  # NaN too: it would make p_feedback NaN, and the person react to every step
            raise KobaError(f"half_life must be >= 0 (0: never tires), got {self.half_life}")
        if self.judge not in ("shortest_path", "straight_line"):
            raise KobaError(f"judge must be shortest_path or straight_line, got {self.judge!r}")
        Delay.parse(self.delay)

    @classmethod
    def parse(cls, text: str) -> HumanConfig:
        """'p_feedback=0.3,p_wrong=0.2,delay=uniform:0.2:1.0' (unnamed fields keep their defaults)."""
        types = {f.name: f.type for f in fields(cls)}
        values = {}
        for item in filter(None, (s.strip() for s in str(text).split(","))):
            key, _, value = item.partition("=")
            if key not in types or not value:
                raise KobaError(f"--human expects k=v with k in {', '.join(types)}, got {item!r}")
            if types[key] == "bool":
                if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                    raise KobaError(f"{key} must be true or false, got {value!r}")
                values[key] = value.lower() in ("1", "true", "yes")
            elif types[key] == "float":
                try:
                    values[key] = float(value)
                except ValueError:
                    raise KobaError(f"{key} must be a number, got {value!r}") from None
                if not math.isfinite(values[key]):
                    raise KobaError(f"{key} must be a finite number, got {value!r}")
            else:
                values[key] = value
        return cls(**values)


@dataclass(frozen=True, order=True)
class Feedback:
    stamp: float          # when the person reacted (the learner credits earlier steps by it)
    value: float
    step: int = -1        # the step it was about (for analysis only; the learner never sees it)


class SimulatedHuman:
    def __init__(self, config: HumanConfig, distance: np.ndarray, seed: int = 0,
                 position_of=None, goal: tuple[int, int] | None = None):
        """distance[s]: steps from state s to the goal (from envs.TabularModel.steps_to_goal). For
        judge="straight_line", position_of(state) -> (row, col) and the goal cell are needed too."""
        self.config, self.distance = config, np.asarray(distance)
        if config.judge == "straight_line" and (position_of is None or goal is None):
            raise KobaError("judge=straight_line needs a grid environment (the maze)")
        self.position_of, self.goal = position_of, goal
        self.delay = Delay.parse(config.delay)
        self.rng = np.random.default_rng(seed)
        self.observed = 0
        self.given = 0
        self.pending: list[Feedback] = []

    @property
    def p_feedback_now(self) -> float:
        """Unsustainability: the chance of reacting at all decays with how long the person has been watching."""
        if self.config.half_life <= 0:
            return self.config.p_feedback
        return self.config.p_feedback * 0.5 ** (self.observed / self.config.half_life)

    def judge(self, state: int, next_state: int, reached_goal: bool) -> float:
        """Natural reaction: how good the step looks to the watcher, in [-1, 1]."""
        if reached_goal:
            return 1.0
        if self.config.judge == "straight_line":
            (r0, c0), (r1, c1), (gr, gc) = self.position_of(state), self.position_of(next_state), self.goal
            before, after = math.hypot(r0 - gr, c0 - gc), math.hypot(r1 - gr, c1 - gc)
        else:
            before, after = self.distance[state], self.distance[next_state]
        progress = float(np.clip(before - after, -1.0, 1.0))
        if self.config.binary:
            return 1.0 if progress > 0 else -1.0  # a person pressed for a sign calls "no progress" bad
        return progress

    def watch(self, step: int, state: int, action: int, next_state: int, reached_goal: bool, shown_at: float) -> None:
        """The person sees a step at time shown_at and may react to it later (see `due`)."""
        for name, s in (("state", state), ("next_state", next_state)):
            if not 0 <= s < len(self.distance):  # numpy would read a negative index as another cell
                raise KobaError(f"{name} must lie in 0..{len(self.distance) - 1}, got {s}")
        p = self.p_feedback_now
        self.observed += 1
        if self.rng.random() >= p:
            return
        value = self.judge(state, next_state, reached_goal)
        if value == 0.0:
            return
        if self.rng.random() < self.config.p_wrong:
            value = -value
        heapq.heappush(self.pending, Feedback(shown_at + self.delay.sample(self.rng), value, step))

    def due(self, now: float) -> list[Feedback]:
        """Reactions whose time has come (stamp <= now), oldest first."""
        out = []
        while self.pending and self.pending[0].stamp <= now:
            out.append(heapq.heappop(self.pending))
        self.given += len(out)
        return out

    # Checkpoints (koba tamer train --resume): a resumed person goes on as tired as before, with the same random
    # stream and the reactions still on their way. Plain numbers and lists (torch.load(weights_only=True)).
    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "observed": self.observed, "given": self.given,
                "pending": [[f.stamp, f.value, f.step] for f in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        pending = [Feedback(float(stamp), float(value), int(step)) for stamp, value, step in state["pending"]]
        heapq.heapify(pending)
        observed, given = int(state["observed"]), int(state["given"])
        type(self.rng.bit_generator)().state = state["rng"]  # a bad state raises here, before any change
        self.rng.bit_generator.state = state["rng"]
        self.observed, self.given, self.pending = observed, given, pending
