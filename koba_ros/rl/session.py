"""One environment and one agent stepped on an outside clock, with human feedback checked and credited.

The clock is the caller's: simulated seconds in the benchmark, ROS time in tamer_learner_node. Every piece of
feedback is checked before it can touch the model (bad stamps, NaN, bursts, nothing to credit); a bad one raises
KobaError with a one-line reason and leaves the session as it was.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import gymnasium as gym

from koba_ros.errors import KobaError
from koba_ros.rl.agents import Agent
from koba_ros.rl.credit import CreditAssigner


@dataclass(frozen=True)
class FeedbackLimits:
    max_future_s: float = 0.5      # stamps further ahead of the learner's clock are rejected (clock skew allowance)
    max_age_s: float = 30.0        # stamps older than this are rejected (the steps they meant may be long gone)
    max_rate_hz: float = 20.0      # token bucket: sustained feedback rate accepted ...
    burst: int = 20                # ... and how many may arrive at once


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
        self.state, _ = env.reset(seed=seed)
        self.episode, self.episode_steps, self.episode_return, self.total_steps = 0, 0, 0.0, 0
        self.episodes: list[EpisodeRecord] = []
        self.rejected: dict[str, int] = {}
        self._tokens, self._token_time = float(limits.burst), None

    def step(self, now: float) -> StepRecord:
        """Act once at time `now`; an episode that ends is recorded and the environment reset."""
        state = int(self.state)
        action = self.agent.act(state)
        next_state, reward, terminated, truncated, _ = self.env.step(action)
        self.agent.observe(state, action, reward, int(next_state), terminated, truncated)
        self.credit.begin(state, action, now)
        self.episode_steps += 1
        self.total_steps += 1
        self.episode_return += float(reward)
        record = StepRecord(self.episode, self.episode_steps, self.total_steps, state, action, float(reward),
                            int(next_state), bool(terminated), bool(truncated), float(now))
        if terminated or truncated:
            self.agent.end_episode(bool(terminated))
            self.episodes.append(EpisodeRecord(self.episode, self.episode_steps, self.episode_return,
                                               bool(terminated), self.agent.feedback_count, float(now)))
            self.episode, self.episode_steps, self.episode_return = self.episode + 1, 0, 0.0
            next_state, _ = self.env.reset()
        self.state = int(next_state)
        return record

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
        self._take_token(now)
        if self.credit.last_time is None:
            raise KobaError("no step yet: feedback arrived before the agent took any step")
        credits = self.credit.assign(stamp)
        if not credits:
            raise KobaError(f"nothing to credit: no step was on screen {self.credit.delay.lo:g}-"
                            f"{self.credit.delay.hi:g} s before the feedback's stamp")
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
