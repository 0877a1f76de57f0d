"""The small MLP every agent uses, in NumPy with its own backward pass and Adam.

Why not torch: at this size (one hidden layer of 64 units, a batch of 32) torch's per-call overhead is ~1 ms per
update on this shared 2-core machine, ten times the arithmetic; the benchmark needs ~10^6 updates. Inputs are
discrete states, each given as a few codes (rows of one embedding table, see envs.state_codes): one code per state
(maze cell: a one-hot input) or one per factor (taxi row, column, passenger place, destination: a concatenation of
one-hots). The first layer sums the codes' rows: exactly a linear layer on that (concatenated) one-hot vector,
without building it. Checkpoints still use torch tensors (torch.load(..., weights_only=True)).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

PARAMS = ("embed", "b1", "w2", "b2")


class StateMLP:
    """q = relu(sum_k E[codes[s, k]] + b1) @ W2 + b2, trained by Adam (Kingma & Ba 2015) on per-sample gradients of
    q(s, a); the embedding rows get lazy (sparse) Adam updates, only where the batch touched them.

    codes: (n_states, k) rows of the embedding table per state; None = one row per state (a plain one-hot input)."""

    def __init__(self, n_states: int, n_actions: int, hidden: int, lr: float, rng: np.random.Generator,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, codes: np.ndarray | None = None):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.codes = np.arange(n_states)[:, None] if codes is None else np.asarray(codes, dtype=np.int64)
        if self.codes.ndim != 2 or len(self.codes) != n_states:
            raise ValueError(f"codes must have shape ({n_states}, k), got {self.codes.shape}")
        # Sums of k rows: scale the initial rows so that the first layer's input keeps the same spread.
        scale = 0.5 / np.sqrt(self.codes.shape[1])
        bound = 1.0 / np.sqrt(hidden)
        self.p = {"embed": rng.uniform(-scale, scale, (int(self.codes.max()) + 1, hidden)), "b1": np.zeros(hidden),
                  # Random output layer for H too, so an untrained H is not 0: a zero one for H was measured
                  # (session 26, docs/dqn_tamer.md) and not adopted.
                  "w2": rng.uniform(-bound, bound, (hidden, n_actions)), "b2": np.zeros(n_actions)}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.t = 0

    def __call__(self, states) -> np.ndarray:
        """(batch, n_actions) values for an array of states (or one row for a single state)."""
        h = np.maximum(self._first_layer(np.atleast_1d(states)), 0.0)
        return h @ self.p["w2"] + self.p["b2"]

    def _first_layer(self, states: np.ndarray) -> np.ndarray:
        return self.p["embed"][self.codes[states]].sum(axis=1) + self.p["b1"]

    def fit(self, states: np.ndarray, actions: np.ndarray,
            loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> float:
        """One Adam step. loss_and_grad(q_sa) returns the loss and dloss/dq_sa for the chosen actions."""
        z = self._first_layer(states)
        h = np.maximum(z, 0.0)
        q = h @ self.p["w2"] + self.p["b2"]
        rows = np.arange(len(states))
        loss, dq_sa = loss_and_grad(q[rows, actions])
        dq = np.zeros_like(q)
        dq[rows, actions] = dq_sa
        dz = (dq @ self.p["w2"].T) * (z > 0)
        codes = self.codes[states]  # every code of a sample gets that sample's dz
        rows_used, inverse = np.unique(codes, return_inverse=True)
        embed_grad = np.zeros((len(rows_used), dz.shape[1]))
        np.add.at(embed_grad, inverse.reshape(codes.shape), dz[:, None, :])
        self.t += 1
        for k, g in (("w2", h.T @ dq), ("b2", dq.sum(0)), ("b1", dz.sum(0))):
            self._adam(k, slice(None), g)
        self._adam("embed", rows_used, embed_grad)  # lazy: only the rows in the batch (as torch's SparseAdam)
        return float(loss)

    def _adam(self, k: str, rows, g: np.ndarray) -> None:
        b1, b2 = self.betas
        m = self.m[k][rows] = b1 * self.m[k][rows] + (1 - b1) * g
        v = self.v[k][rows] = b2 * self.v[k][rows] + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** self.t), v / (1 - b2 ** self.t)
        self.p[k][rows] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def copy_from(self, other: StateMLP) -> None:
        self.p = {k: v.copy() for k, v in other.p.items()}

    def state_dict(self) -> dict:
        out = {"t": self.t}
        for name, table in (("p", self.p), ("m", self.m), ("v", self.v)):
            out.update({f"{name}.{k}": torch.from_numpy(v.copy()) for k, v in table.items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        for name, table in (("p", self.p), ("m", self.m), ("v", self.v)):
            for k in PARAMS:
                if tuple(state[f"{name}.{k}"].shape) != table[k].shape:
                    raise ValueError(f"checkpoint {name}.{k} has shape {tuple(state[f'{name}.{k}'].shape)}, "
                                     f"expected {table[k].shape}")
                table[k] = state[f"{name}.{k}"].numpy().astype(np.float64)
