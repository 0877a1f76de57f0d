"""The benchmark environments, koba/Maze-v0 and gymnasium's Taxi (v3 dynamics, id Taxi-v4), and a model of each.

The model (next state and "reached the goal" for every state and action) gives the steps-to-goal distance that the
simulated human judges actions by, and the benchmark's "solved" criterion.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from koba_ros.errors import KobaError

MAZE_ID = "koba/Maze-v0"
# Taxi-v4 is Taxi-v3 (same deterministic dynamics and rewards); gymnasium 1.4 only fixed its rainy/fickle options.
ENV_IDS = {"maze": MAZE_ID, "taxi": "Taxi-v4"}

if MAZE_ID not in gym.registry:
    gym.register(id=MAZE_ID, entry_point="koba_ros.rl.maze:MazeEnv")


def make_env(name: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """`maze` (kwargs: layout, max_steps, step_penalty, goal_reward) or `taxi`."""
    if name not in ENV_IDS:
        raise KobaError(f"unknown environment {name!r}; choose one of {', '.join(ENV_IDS)}")
    if name == "taxi" and kwargs:
        raise KobaError(f"taxi takes no options, got {', '.join(kwargs)}")
    return gym.make(ENV_IDS[name], render_mode=render_mode, **kwargs)


@dataclass
class TabularModel:
    """Deterministic dynamics: next_state[s, a], and success[s, a] when that step reaches the goal."""
    next_state: np.ndarray
    success: np.ndarray

    @property
    def n_states(self) -> int:
        return self.next_state.shape[0]

    def steps_to_goal(self) -> np.ndarray:
        """Fewest steps from each state to success (Bellman-Ford on unit costs); -1 where it cannot be reached."""
        big = np.iinfo(np.int64).max // 4
        distance = np.full(self.n_states, big, dtype=np.int64)
        distance[self.success.any(axis=1)] = 1
        for _ in range(self.n_states):
            via = np.where(self.success, 1, distance[self.next_state] + 1).min(axis=1)
            updated = np.minimum(distance, via)
            if np.array_equal(updated, distance):
                break
            distance = updated
        return np.where(distance >= big, -1, distance)


def tabular_model(env: gym.Env) -> TabularModel:
    inner = env.unwrapped
    if hasattr(inner, "grid"):  # our maze
        n = inner.observation_space.n
        next_state = np.zeros((n, 4), dtype=np.int64)
        success = np.zeros((n, 4), dtype=bool)
        for s in range(n):
            for a in range(4):
                p = inner.next_position(inner.position_of(s), a)
                next_state[s, a], success[s, a] = inner.state_of(p), p == inner.goal
        return TabularModel(next_state, success)
    if hasattr(inner, "P"):  # gymnasium toy-text (Taxi): P[s][a] = [(prob, next, reward, terminated)]
        n, m = inner.observation_space.n, inner.action_space.n
        next_state = np.zeros((n, m), dtype=np.int64)
        success = np.zeros((n, m), dtype=bool)
        for s in range(n):
            for a in range(m):
                _, s2, reward, terminated = inner.P[s][a][0]
                next_state[s, a], success[s, a] = s2, terminated and reward > 0
        return TabularModel(next_state, success)
    raise KobaError(f"no tabular model for {env.spec.id if env.spec else env}")
