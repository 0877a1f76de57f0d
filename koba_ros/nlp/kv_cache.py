"""Keys and values of the tokens already seen, kept per layer, so that decoding one more token costs one token.

In a causal model the key and value of token t depend only on tokens <= t, so they never change once computed.
Autoregressive decoding can therefore run the model on the new token alone and let it attend over the stored
keys and values of the earlier ones (the "KV cache" of every transformer inference stack; Pope et al., MLSys 2023,
"Efficiently Scaling Transformer Inference", analyse its cost). Each layer's buffers are allocated once, for
`capacity` tokens, in the dtype of the first keys written (bf16 under autocast), and filled in place. The stored
tokens' ids are kept too, for a model whose earlier keys stop holding as the sequence grows (LongRoPE past its
original context) to run them all again once (`restart`).

    cache = KVCache(model.config.n_layers, capacity=model.config.max_len)
    logits, _ = model(prompt_ids, cache=cache)        # prefill: the prompt's keys and values are stored
    logits, _ = model(next_id[:, None], cache=cache)  # one token: attends over the prompt and itself
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError


class LayerKV:
    """One layer's keys and values [B, H, capacity, d_head]; `extend` appends the new tokens' and returns all (with
    a window, the last window - 1 stored ones and the new ones: all that the new tokens may attend to)."""

    def __init__(self, owner: KVCache, window: int = 0):
        self.owner, self.window = owner, window
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.owner.length
        end = start + k.shape[2]
        if end > self.owner.capacity:
            raise KobaError(f"KV cache holds {self.owner.capacity} tokens; "
                            f"{start} stored + {k.shape[2]} new do not fit")
        if self.window:
            return self._slide(k, v)
        if self.keys is None:
            B, H, _, d = k.shape
            self.keys = k.new_empty(B, H, self.owner.capacity, d)
            self.values = v.new_empty(B, H, self.owner.capacity, d)
        elif k.shape[0] != self.keys.shape[0]:
            raise KobaError(f"KV cache was filled for batch {self.keys.shape[0]}, got batch {k.shape[0]}")
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _slide(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sliding-window attention (blocks.py): a token never sees a key `window` or more positions back, so only
        the last window - 1 are kept; the cache's memory is bounded by the window, not by the context."""
        if self.keys is not None and k.shape[0] != self.keys.shape[0]:
            raise KobaError(f"KV cache was filled for batch {self.keys.shape[0]}, got batch {k.shape[0]}")
        keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)
        values = v if self.values is None else torch.cat([self.values, v], dim=2)
        start = max(0, keys.shape[2] - (self.window - 1))  # fewer stored than that: all (a negative start would
        self.keys, self.values = keys[:, :, start:], values[:, :, start:]  # count from the end and drop some)
        return keys, values


class KVCache:
    """Per-layer keys and values of the first `length` tokens of a batch, room for `capacity` tokens.

    `window`: the model's sliding window, one for every layer (attention_window) or one per layer (config's
    layer_windows; 0 for a layer that attends over everything): a layer with a window stores only the last
    window - 1 keys and values."""

    def __init__(self, n_layers: int, capacity: int, window: int | list[int] = 0):
        if n_layers < 1 or capacity < 1:
            raise KobaError(f"KV cache needs >= 1 layer and >= 1 token of room, got {n_layers} and {capacity}")
        windows = [window] * n_layers if isinstance(window, int) else list(window)
        if len(windows) != n_layers:
            raise KobaError(f"KV cache: {len(windows)} windows for {n_layers} layers")
        self.capacity = capacity  # positions it may reach
        self.length = 0  # tokens stored; the model advances it after all its layers have extended
        self.layers = [LayerKV(self, w) for w in windows]
        self.ids: torch.Tensor | None = None  # [B, capacity]: the first `length` are the stored tokens' ids

    def advance(self, n: int, ids: torch.Tensor | None = None) -> None:
        """`n` more tokens stored (by every layer); `ids` [B, n]: theirs, kept for `restart`."""
        if ids is not None:
            if self.ids is None:
                self.ids = ids.new_empty(ids.shape[0], self.capacity)
            self.ids[:, self.length:self.length + n] = ids
        self.length += n

    def restart(self, ids: torch.Tensor) -> torch.Tensor:
        """The stored tokens' ids followed by `ids`, the cache emptied for them to be run again from the start: for a
        model whose earlier tokens' keys and values change as the sequence grows (LongRoPE outgrowing its original
        context switches every position's frequencies, and through the layers every key and value), as
        transformers' Phi-3 drops its cache there. Needs the ids of every stored token (`advance`)."""
        if self.ids is None or self.ids.shape[0] != ids.shape[0]:
            raise KobaError("KV cache: restarting needs the ids of the tokens it stores, for the same batch")
        everything = torch.cat([self.ids[:, :self.length], ids], dim=1)
        self.length = 0
        for layer in self.layers:
            layer.keys = layer.values = None
        return everything
