"""Turn-over dropout (Kobayashi, Yokoi, Suzuki & Inui 2020, "Efficient Estimation of Influence of a Training
Instance", SustaiNLP; arXiv 2012.04207).

Every training instance i owns one fixed dropout mask m_i, derived from i alone (a hash, no stored state), and is
always trained through it. The units that m_i drops form the "flipped" sub-network 1 - m_i, which never receives a
gradient from i. Comparing the two sub-networks on a target z estimates how much learning i changed the loss on z
(the paper's influence estimator, its eq. for I(z_target, z_i)):

    I(z, z_i) = L(z; f^(1 - m_i)) - L(z; f^(m_i))

Positive: the network that learned i does better on z, so i helps z; negative: i hurts z. With z = z_i itself this
is i's self-influence: how much the model needed to memorise i, high for mislabeled or atypical instances.

Disjointness is exact when every learned representation between the input and the output goes through a turn-over
layer (no normalisation across masked units): a weight that connects two units gets a gradient from i only when
both are kept by m_i, and the flipped sub-network uses only weights whose units m_i drops. The output layer's bias
is the one parameter both sub-networks share. test_nlp_turnover_dropout checks this parameter by parameter.

Masks keep a unit with probability 1 - p and are scaled by 1 / (1 - p); the flipped mask keeps the rest, scaled by
1 / p, so both sub-networks have the whole network's expected activation. p = 0.5 (the paper's choice) makes the two
halves the same size. Without instance ids the layer is the identity: the whole network, for prediction.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Steele et al.'s SplitMix64 finaliser: a fixed, well-mixed hash of 64-bit integers (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def instance_masks(instances, width: int, p: float = 0.5, seed: int = 0, salt: int = 0,
                   chunk_elements: int = 1 << 20) -> torch.Tensor:
    """Boolean keep-masks [len(instances), width]: m_i, the same for instance i on every call, in every process.

    salt tells apart the turn-over layers of one network, seed the networks (a different seed, different masks).
    The 64-bit hashes are made chunk_elements at a time (8 MiB each), so that only the bool result grows with the
    number of instances; unit j of m_i is kept when the top 53 bits of its hash, as a fraction of 2^53, are >= p."""
    ids = np.asarray(torch.as_tensor(instances).cpu(), dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"instance ids must be one-dimensional, got shape {ids.shape}")
    if (ids < 0).any():
        raise ValueError("instance ids must be non-negative")
    # (bits >> 11) * 2^-53 >= p, in integers: that product is exact, so this is the same comparison without floats
    threshold = np.uint64(math.ceil(p * 2.0 ** 53))
    out = np.empty((len(ids), width), dtype=bool)
    rows = max(1, chunk_elements // max(1, width))
    with np.errstate(over="ignore"):
        layer = _splitmix64(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(salt))
        units = np.arange(width, dtype=np.uint64) * _GOLDEN
        for start in range(0, len(ids), rows):
            key = _splitmix64(ids[start:start + rows].astype(np.uint64) ^ layer)
            bits = _splitmix64(key[:, None] + units[None, :])
            out[start:start + rows] = (bits >> np.uint64(11)) >= threshold
    return torch.from_numpy(out)


class TurnOverDropout(nn.Module):
    """x * m_i / (1 - p) for instance i (or x * (1 - m_i) / p flipped); the identity without instance ids.

    x is [B, ..., width] with instances [B]: row b gets instance b's mask, broadcast over the middle dimensions, so
    [C, V, width] with C instances scores V targets under each instance's (flipped) mask at once. Instances shaped
    like x without its last dimension ([B, T] for a language model's tokens) give every position its own instance's
    mask: a training window that spans two documents trains each token through its own document's mask."""

    def __init__(self, width: int, salt: int, p: float = 0.5, seed: int = 0):
        super().__init__()
        if not 0.0 < p < 1.0:
            raise ValueError(f"turn-over dropout needs 0 < p < 1, got {p}")
        self.width, self.salt, self.p, self.seed = width, salt, p, seed

    def forward(self, x: torch.Tensor, instances: torch.Tensor | None = None, flip: bool = False) -> torch.Tensor:
        if instances is None:
            return x
        per_position = instances.dim() == x.dim() - 1 and instances.dim() > 1
        # a batch holds few distinct instances: hash each once, then gather
        distinct, which = torch.unique(instances.reshape(-1), return_inverse=True)
        keep = instance_masks(distinct, self.width, self.p, self.seed, self.salt).to(x.device)[which.to(x.device)]
        if flip:
            keep, scale = ~keep, 1.0 / self.p
        else:
            scale = 1.0 / (1.0 - self.p)
        if per_position:
            keep = keep.view(*instances.shape, self.width)
        else:
            keep = keep.view(instances.shape[0], *([1] * (x.dim() - 2)), self.width)
        return x * (keep.to(x.dtype) * scale)

    def extra_repr(self) -> str:
        return f"width={self.width}, p={self.p}, salt={self.salt}, seed={self.seed}"
