"""A grid maze with the gymnasium API, registered as "koba/Maze-v0".

Observation: the agent's cell index (row * cols + col), Discrete(rows * cols). Actions: 0 up, 1 right, 2 down, 3 left.
Reward: `step_penalty` every step, `goal_reward` on reaching the goal (the episode terminates); truncated after
`max_steps`. Layouts are lists of strings: '#' wall, 'S' start, 'G' goal, '.' free.
"""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import gymnasium as gym
import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.checks import whole

LAYOUTS: dict[str, tuple[str, ...]] = {
    # The default 10x10 maze: the shortest path from S to G is 26 steps, with dead ends.
    "default": (
        "S..#......",
        ".#.#.####.",
        ".#...#....",
        ".####.#.##",
        "......#...",
        "##.####.#.",
        "...#....#.",
        ".#.#.####.",
        ".#...#..#.",
        "...#...#.G",
    ),
    "open5": (
        "S....",
        ".....",
        ".....",
        ".....",
        "....G",
    ),
    "corridor": (
        "S.#..",
        "..#.#",
        "....G",
    ),
}

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
ACTION_NAMES = ("up", "right", "down", "left")


def parse_layout(layout: str | list[str] | tuple[str, ...]) -> np.ndarray:
    """A layout name or rows of characters -> a char array; bad layouts raise KobaError."""
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise KobaError(f"unknown maze layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
        layout = LAYOUTS[layout]
    rows = [str(r) for r in layout]
    if not rows or len({len(r) for r in rows}) != 1 or not rows[0]:
        raise KobaError("maze layout must be non-empty rows of equal length")
    grid = np.array([list(r) for r in rows])
    bad = set(np.unique(grid)) - set("#SG.")
    if bad:
        raise KobaError(f"maze layout has unknown characters {''.join(sorted(bad))!r}; use # S G .")
    for mark in "SG":
        if (grid == mark).sum() != 1:
            raise KobaError(f"maze layout needs exactly one {mark!r}")
    return grid


class MazeEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, layout="default", max_steps: int = 300, step_penalty: float = -0.01,
                 goal_reward: float = 1.0, render_mode: str | None = None, cell_px: int = 16):
        self.grid = parse_layout(layout)
        self.rows, self.cols = self.grid.shape
        self.start = self._find("S")
        self.goal = self._find("G")
        # int() made 2.5 a limit of 2 and NaN a ValueError; a cell_px of 0 drew an empty picture, -1 raised in render
        whole(SimpleNamespace(max_steps=max_steps, cell_px=cell_px), "maze ", "max_steps", "cell_px")
        self.max_steps, self.step_penalty, self.goal_reward = int(max_steps), float(step_penalty), float(goal_reward)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:  # as gymnasium's own envs
            raise KobaError(f"maze render_mode must be None or one of {', '.join(self.metadata['render_modes'])}, "
                            f"got {render_mode!r}")
        self.render_mode, self.cell_px = render_mode, int(cell_px)
        self.observation_space = gym.spaces.Discrete(self.rows * self.cols)
        self.action_space = gym.spaces.Discrete(4)
        self.distance = self._distances_to_goal()
        if self.distance[self.start] < 0:
            raise KobaError("maze goal is unreachable from the start: walls cut every path")
        self.position, self.steps = self.start, 0

    # --- gymnasium API --------------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.steps = self.start, 0
        return self._obs(), {"distance": int(self.distance[self.position])}

    def step(self, action):
        # no int(): 1.7 or "1" is the caller's mistake, not action 1; nor is True (a bool is an int to Python)
        if isinstance(action, (bool, np.bool_)) or not self.action_space.contains(action):
            raise KobaError(f"maze action must be an integer 0..3, got {action!r}")
        self.position = self.next_position(self.position, int(action))
        self.steps += 1
        terminated = self.position == self.goal
        reward = self.goal_reward if terminated else self.step_penalty
        truncated = not terminated and self.steps >= self.max_steps
        return self._obs(), reward, terminated, truncated, {"distance": int(self.distance[self.position])}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        colors = np.where((self.grid == "#")[..., None], np.array([40, 40, 60]), np.array([235, 235, 225]))
        colors[self.goal] = (60, 180, 75)
        colors[self.position] = (220, 50, 50)
        image = np.repeat(np.repeat(colors, self.cell_px, axis=0), self.cell_px, axis=1)
        return image.astype(np.uint8)

    # --- model of the maze (for the simulated human and the benchmark) ---------------------
    @property
    def shortest_path(self) -> int:
        return int(self.distance[self.start])

    def next_position(self, position: tuple[int, int], action: int) -> tuple[int, int]:
        r, c = position[0] + MOVES[action][0], position[1] + MOVES[action][1]
        if 0 <= r < self.rows and 0 <= c < self.cols and self.grid[r, c] != "#":
            return (r, c)
        return position  # bumping into a wall or the border: stay

    def state_of(self, position: tuple[int, int]) -> int:
        return position[0] * self.cols + position[1]

    def position_of(self, state: int) -> tuple[int, int]:
        return divmod(int(state), self.cols)

    def _obs(self) -> int:
        return self.state_of(self.position)

    def _find(self, mark: str) -> tuple[int, int]:
        r, c = np.argwhere(self.grid == mark)[0]
        return int(r), int(c)

    def _distances_to_goal(self) -> np.ndarray:
        """Breadth-first search from the goal: steps to the goal per cell, -1 where unreachable or a wall."""
        distance = np.full(self.grid.shape, -1, dtype=np.int64)
        distance[self.goal] = 0
        queue = deque([self.goal])
        while queue:
            r, c = queue.popleft()
            for dr, dc in MOVES:
                nr, nc = r + dr, c + dc
                if 0 <= nr < self.rows and 0 <= nc < self.cols and self.grid[nr, nc] != "#" and distance[nr, nc] < 0:
                    distance[nr, nc] = distance[r, c] + 1
                    queue.append((nr, nc))
        return distance
