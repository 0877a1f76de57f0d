"""Keys and values of the tokens already seen, kept per layer, so that decoding one more token costs one token.

In a causal model the key and value of token t depend only on tokens <= t, so they never change once computed.
Autoregressive decoding can therefore run the model on the new token alone and let it attend over the stored
keys and values of the earlier ones (the "KV cache" of every transformer inference stack; Pope et al., MLSys 2023,
"Efficiently Scaling Transformer Inference", analyse its cost). Each layer's buffers are allocated once, for
`capacity` tokens, in the dtype of the first keys written (bf16 under autocast), and filled in place.

    cache = KVCache(model.config.n_layers, capacity=model.config.max_len)
    logits, _ = model(prompt_ids, cache=cache)        # prefill: the prompt's keys and values are stored
    logits, _ = model(next_id[:, None], cache=cache)  # one token: attends over the prompt and itself
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError


class LayerKV:
    """One layer's keys and values [B, H, capacity, d_head]; `extend` appends the new tokens' and returns all."""

    def __init__(self, owner: KVCache):
        self.owner = owner
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.owner.length
        end = start + k.shape[2]
        if end > self.owner.capacity:
            raise KobaError(f"KV cache holds {self.owner.capacity} tokens; "
                            f"{start} stored + {k.shape[2]} new do not fit")
        if self.keys is None:
            B, H, _, d = k.shape
            self.keys = k.new_empty(B, H, self.owner.capacity, d)
            self.values = v.new_empty(B, H, self.owner.capacity, d)
        elif k.shape[0] != self.keys.shape[0]:
            raise KobaError(f"KV cache was filled for batch {self.keys.shape[0]}, got batch {k.shape[0]}")
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """Per-layer keys and values of the first `length` tokens of a batch, room for `capacity` tokens."""

    def __init__(self, n_layers: int, capacity: int):
        if n_layers < 1 or capacity < 1:
            raise KobaError(f"KV cache needs >= 1 layer and >= 1 token of room, got {n_layers} and {capacity}")
        self.capacity = capacity
        self.length = 0  # tokens stored; the model advances it after all its layers have extended
        self.layers = [LayerKV(self) for _ in range(n_layers)]

    def advance(self, n: int) -> None:
        self.length += n
