"""Ring-buffer replay memories: environment transitions (for Q) and credited human feedback (for H)."""
from __future__ import annotations

import numpy as np
import torch


class RingBuffer:
    """Fixed-size columns of numbers; sample() returns a dict of arrays."""

    def __init__(self, capacity: int, columns: dict[str, np.dtype]):
        self.capacity, self.size, self.cursor = int(capacity), 0, 0
        self.data = {name: np.zeros(self.capacity, dtype=dtype) for name, dtype in columns.items()}

    def __len__(self) -> int:
        return self.size

    def add(self, **row) -> None:
        for name, column in self.data.items():
            column[self.cursor] = row[name]
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.size, size=min(batch, self.size))
        return {name: column[idx] for name, column in self.data.items()}

    # Checkpoints hold tensors only, so they load with torch.load(weights_only=True).
    def state_dict(self) -> dict:
        return {"size": self.size, "cursor": self.cursor,
                **{f"col.{name}": torch.from_numpy(column.copy()) for name, column in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        for name in self.data:
            self.data[name][:] = state[f"col.{name}"].numpy()


def transition_buffer(capacity: int) -> RingBuffer:
    return RingBuffer(capacity, {"state": np.int64, "action": np.int64, "reward": np.float32,
                                 "next_state": np.int64, "done": np.float32})


def feedback_buffer(capacity: int) -> RingBuffer:
    return RingBuffer(capacity, {"state": np.int64, "action": np.int64, "value": np.float32, "weight": np.float32})
