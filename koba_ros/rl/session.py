"""One environment and one agent stepped on an outside clock, with human feedback checked and credited.

The clock is the caller's: simulated seconds in the benchmark, ROS time in tamer_learner_node. Every piece of
feedback is checked before it can touch the model (bad stamps, NaN, bursts, nothing to credit); a bad one raises
KobaError with a one-line reason and leaves the session as it was.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real

import gymnasium as gym
import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.agents import Agent
from koba_ros.rl.credit import CreditAssigner, ShownStep


@dataclass(frozen=True)
class FeedbackLimits:
    max_future_s: float = 0.5      # stamps further ahead of the learner's clock are rejected (clock skew allowance)
    max_age_s: float = 30.0        # stamps older than this are rejected (the steps they meant may be long gone)
    max_rate_hz: float = 20.0      # token bucket: sustained feedback rate accepted ...
    burst: int = 20                # ... and how many may arrive at once

    def __post_init__(self):
        # NaN compares false, so a NaN limit would silently switch its check off; a burst < 1 rejects everything.
        for name, strict in (("max_future_s", False), ("max_age_s", True), ("max_rate_hz", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0 or \
                    (strict and value == 0):
                shown = "max_rate_hz (max_feedback_rate_hz)" if name == "max_rate_hz" else name  # the node's name too
                raise KobaError(f"{shown} must be a finite number {'>' if strict else '>='} 0, got {value!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, Integral) or self.burst < 1:
            raise KobaError(f"burst (feedback_burst) must be a whole number >= 1, got {self.burst!r}")


@dataclass(frozen=True)
class StepRecord:
    episode: int
    step: int             # step within the episode, from 1
    total_steps: int
    state: int
    action: int
    reward: float
    next_state: int
    terminated: bool
    truncated: bool
    time: float
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)  # step(render=True): the result shown


@dataclass(frozen=True)
class EpisodeRecord:
    episode: int
    steps: int
    ret: float
    reached_goal: bool
    feedback: int         # feedback credited so far (cumulative)
    time: float


class TrainingSession:
    def __init__(self, env: gym.Env, agent: Agent, credit: CreditAssigner | None = None,
                 limits: FeedbackLimits = FeedbackLimits(), seed: int = 0):
        self.env, self.agent = env, agent
        self.credit = credit or CreditAssigner()
        self.limits = limits
        self.seed = seed
        self._start_rng = None  # env.np_random's state before the reset that began this episode (None: the seed's)
        self.state, _ = env.reset(seed=seed)
        self.episode, self.episode_steps, self.episode_return, self.total_steps = 0, 0, 0.0, 0
        self.episodes: list[EpisodeRecord] = []
        self.rejected: dict[str, int] = {}
        self._tokens, self._token_time = float(limits.burst), None

    def step(self, now: float, render: bool = False) -> StepRecord:
        """Act once at time `now`; an episode that ends is recorded and the environment reset. With render, the
        record carries the frame of the step's result, drawn before that reset (the terminal step is shown too)."""
        state = int(self.state)
        action = self.agent.act(state)
        next_state, reward, terminated, truncated, _ = self.env.step(action)
        frame = self.render() if render else None
        self.agent.observe(state, action, reward, int(next_state), terminated, truncated)
        self.credit.begin(state, action, now)
        self.episode_steps += 1
        self.total_steps += 1
        self.episode_return += float(reward)
        record = StepRecord(self.episode, self.episode_steps, self.total_steps, state, action, float(reward),
                            int(next_state), bool(terminated), bool(truncated), float(now), frame)
        if terminated or truncated:
            self.agent.end_episode(bool(terminated))
            self.episodes.append(EpisodeRecord(self.episode, self.episode_steps, self.episode_return,
                                               bool(terminated), self.agent.feedback_count, float(now)))
            self.episode, self.episode_steps, self.episode_return = self.episode + 1, 0, 0.0
            self._start_rng = self._env_rng()
            next_state, _ = self.env.reset()
        self.state = int(next_state)
        return record

    def render(self) -> np.ndarray | None:
        """The environment's picture now (None without render_mode); a missing drawing library is one line."""
        try:
            return self.env.render()
        except gym.error.DependencyNotInstalled as exc:
            raise KobaError(f"cannot draw {self.env.spec.id if self.env.spec else 'the environment'}: "
                            f"{str(exc).splitlines()[0]}") from None

    # --- checkpoints: what a resumed run needs besides the agent, to go on exactly as if never stopped ----------
    def _env_rng(self) -> dict:
        return self._env_rng_generator().bit_generator.state

    def state_dict(self) -> dict:
        """Plain numbers and lists (torch.load(weights_only=True)). At an episode boundary (the benchmark, the node's
        periodic save) the environment's random state is the one before the reset that began the current episode,
        so a resumed run replays that reset and draws the same start state. A save in the middle of an episode
        (the node's shutdown) does not continue that episode: the resumed run ends it for the agent, as not
        reaching the goal and not recorded in the curve, and starts the next one from the current random state."""
        return {"episode_steps": self.episode_steps,
                "env_rng": self._env_rng() if self.episode_steps else self._start_rng,
                "credit": [[s.state, s.action, s.start, s.end] for s in self.credit.steps],
                "tokens": self._tokens, "token_time": self._token_time, "rejected": dict(self.rejected)}

    def load_state_dict(self, state: dict, now: float | None = None) -> None:
        """Restores state_dict() (after the agent and the episode history); never re-seeds the environment. The step
        on screen at the save is closed at `now` (the saved clock; None: its start): after a restart it is no longer
        shown, and the learner's clock may have moved on by hours (ROS time), so it must not take new feedback."""
        credit = [ShownStep(int(a), int(b), float(start), float(end)) for a, b, start, end in state["credit"]]
        tokens = float(state["tokens"])
        token_time = None if state["token_time"] is None else float(state["token_time"])
        rejected = {str(k): int(v) for k, v in dict(state["rejected"]).items()}
        interrupted = int(state["episode_steps"]) > 0
        rng = state["env_rng"]
        if rng is not None:
            type(self._env_rng_generator().bit_generator)().state = rng  # a bad state raises here, before any change
        if interrupted:
            self.agent.end_episode(False)  # see state_dict: the interrupted episode is over for the agent
        if rng is None:
            self.state, _ = self.env.reset(seed=self.seed)
        else:
            self._env_rng_generator().bit_generator.state = rng
            self.state, _ = self.env.reset()
        self.state = int(self.state)
        self._start_rng = rng
        self.episode, self.episode_steps, self.episode_return = len(self.episodes), 0, 0.0
        self.credit.steps.clear()
        self.credit.steps.extend(credit)
        if credit:
            self.credit.end(credit[-1].start if now is None else max(float(now), credit[-1].start))
        self._tokens, self._token_time, self.rejected = tokens, token_time, rejected

    def _env_rng_generator(self) -> np.random.Generator:
        return self.env.unwrapped.np_random

    def feedback(self, value: float, stamp: float, now: float, confidence: float = 1.0) -> int:
        """Credit feedback given at `stamp` (the person's reaction time) to the steps before it; returns how many
        steps it reached. Bad feedback raises KobaError (counted in self.rejected) and changes nothing."""
        try:
            credits = self._check(value, stamp, now, confidence)
        except KobaError as exc:
            reason = str(exc).split(":")[0]
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
            raise
        if self.agent.uses_feedback:
            self.agent.feedback(max(-1.0, min(1.0, float(value))) * float(confidence), credits)
        return len(credits)

    def _check(self, value, stamp, now, confidence):
        if not math.isfinite(value):
            raise KobaError(f"bad value: feedback value is {value}; expected a finite number (+1 good, -1 bad)")
        if not (math.isfinite(confidence) and 0.0 < confidence <= 1.0):
            raise KobaError(f"bad confidence: {confidence}; expected 0 < confidence <= 1")
        if not math.isfinite(stamp):
            raise KobaError(f"bad stamp: {stamp}")
        if stamp - now > self.limits.max_future_s:
            raise KobaError(f"future stamp: feedback stamped {stamp - now:.2f} s in the future; clocks out of sync?")
        if now - stamp > self.limits.max_age_s:
            raise KobaError(f"late stamp: feedback stamped {now - stamp:.1f} s ago, more than max_age_s="
                            f"{self.limits.max_age_s:g} s")
        if self.credit.last_time is None:
            raise KobaError("no step yet: feedback arrived before the agent took any step")
        credits = self.credit.assign(stamp)
        if not credits:
            raise KobaError(f"nothing to credit: no step was on screen {self.credit.delay.lo:g}-"
                            f"{self.credit.delay.hi:g} s before the feedback's stamp")
        self._take_token(now)  # last: only feedback that reaches the model spends the rate limit
        return credits

    def _take_token(self, now: float) -> None:
        if self._token_time is not None:
            refill = max(0.0, now - self._token_time) * self.limits.max_rate_hz
            self._tokens = min(float(self.limits.burst), self._tokens + refill)
        self._token_time = now
        if self._tokens < 1.0:
            raise KobaError(f"too fast: more than {self.limits.max_rate_hz:g} feedback/s (burst "
                            f"{self.limits.burst}); dropped")
        self._tokens -= 1.0

    def pause(self, now: float) -> None:
        """The learner stops stepping: the step on screen stops being creditable after now."""
        self.credit.end(now)

    def summary(self) -> dict:
        last = self.episodes[-1] if self.episodes else None
        return {"episodes": len(self.episodes), "total_steps": self.total_steps,
                "last_episode": asdict(last) if last else None, "rejected": dict(self.rejected),
                **self.agent.stats()}
