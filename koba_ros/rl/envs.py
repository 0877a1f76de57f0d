"""The benchmark environments, koba/Maze-v0 and gymnasium's Taxi (v3 dynamics, id Taxi-v4), and a model of each.

The model (next state and "reached the goal" for every state and action) gives the steps-to-goal distance that the
simulated human judges actions by, and the benchmark's "solved" criterion.
"""
from __future__ import annotations

import os
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
    if name == "taxi" and render_mode == "rgb_array":  # drawn off-screen: without this SDL looks for a display and
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # prints an error line on a machine that has none
    return gym.make(ENV_IDS[name], render_mode=render_mode, **kwargs)


ENCODINGS = ("onehot", "factored", "subgoal")
# (Q's, H's) encoding per environment. Taxi: Q one-hot (it sees every transition and needs exact values; one seed,
# 300 episodes: return -45 one-hot vs -84 factored), H subgoal (~1400 noisy labels for 3000 state-actions: it must
# generalise; TAMER's greedy action was right in 0.75 of the states with one-hot, 0.80 factored, 0.87 subgoal).
DEFAULT_ENCODING = {"maze": ("onehot", "onehot"), "taxi": ("onehot", "subgoal")}


def state_codes(env: gym.Env, encoding: str) -> np.ndarray:
    """How the networks see a state: (n_states, k) rows of one embedding table (networks.StateMLP).

    onehot:   one row per state (k = 1), no generalisation between states: fine for the maze's ~60 cells.
    factored: one row per factor (a concatenated one-hot): the maze's (row, column); Taxi's (taxi row, taxi column,
              passenger place, destination), 5 + 5 + 5 + 4 = 19 rows instead of 500. What H and Q learn about
              "go north when the passenger is north" then carries over to states never visited.
    subgoal:  Taxi only: the factored rows plus one row per (taxi cell, current sub-goal place, passenger aboard),
              25 x 4 x 2 = 200 rows: the state as the watcher judges it (where is the taxi, where must it go next).
              States that differ only in the destination while the passenger waits share it.
    """
    if encoding not in ENCODINGS:
        raise KobaError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    inner = env.unwrapped
    n = inner.observation_space.n
    if encoding == "onehot":
        return np.arange(n)[:, None]
    if hasattr(inner, "grid"):  # our maze: (row, column)
        if encoding == "subgoal":
            raise KobaError("the subgoal encoding is for taxi; the maze has one goal (use onehot or factored)")
        return np.array([[r, inner.rows + c] for r, c in map(inner.position_of, range(n))])
    if hasattr(inner, "decode"):  # Taxi: decode(s) -> (taxi row, taxi col, passenger location, destination)
        sizes = np.array([5, 5, 5, 4])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        factors = np.array([list(inner.decode(s)) for s in range(n)])
        codes = factors + offsets
        if encoding == "factored":
            return codes
        row, col, passenger, destination = factors.T
        aboard = passenger == 4
        subgoal = np.where(aboard, destination, np.minimum(passenger, 3))
        cell = row * 5 + col
        return np.column_stack([codes, sizes.sum() + (cell * 4 + subgoal) * 2 + aboard])
    raise KobaError(f"no factored encoding for {env.spec.id if env.spec else env}")


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
