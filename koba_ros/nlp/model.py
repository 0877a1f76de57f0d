"""The decoder-only LM and the text encoder, built from one TransformerConfig.

    lm = TransformerLM(TransformerConfig(n_layers=4))          # causal, next-token loss
    enc = TextEncoder(TransformerConfig(n_layers=2))           # bidirectional, pooled sentence vectors
    ids, mask = ByteTokenizer().batch(["red cube", "the teddy bear"])
    vectors = enc.encode(ids, mask)                            # [2, d_model], L2-normalised
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from koba_ros.errors import KobaError
from koba_ros.nlp.blocks import Block, norm_layer, soft_cap
from koba_ros.nlp.chunked_cross_entropy import chunked_cross_entropy
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.document_mask import same_document_causal
from koba_ros.nlp.embeddings import build_embedding
from koba_ros.nlp.init import init_weights
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.positions import RotaryPositions, build_positions


class Transformer(nn.Module):
    """Embeddings (+ Spike-No-More fixes) -> positions -> N blocks -> final LN (Pre-LN and sandwich only); no head.

    `checkpoint_blocks = True` (training's `activation_checkpointing`): in training with gradients, each block keeps
    only its input for the backward pass and recomputes its activations there (Chen et al. 2016, "Training Deep Nets
    with Sublinear Memory Cost", arXiv:1604.06174: store the inputs of segments, recompute inside them). Activation
    memory then grows with one block's intermediates plus N block inputs instead of N blocks' intermediates, for one
    more forward pass of the blocks; the result and the gradients are unchanged (dropout masks are replayed from the
    saved RNG). With a KV cache the blocks run without it: each must write its keys and values into the cache.
    """

    causal = True
    checkpoint_blocks = False

    def __init__(self, config: TransformerConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.embed = build_embedding(config)
        self.positions = build_positions(config)
        # Gemma 3: the sliding-window layers rotate with a base of their own (short distances, no scaling).
        self.local_positions = RotaryPositions(config.rope_dim, config.rope_local_theta) \
            if config.rope_local_theta else None
        self.embed_norm = norm_layer(config) if config.embed_norm else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        # Post-LN and B2T layers already end in a LayerNorm; Pre-LN (and sandwich) needs one before the head.
        self.final_norm = norm_layer(config) if config.norm in ("pre", "sandwich") else None

    def hidden(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None, shift=None,
               cache: KVCache | None = None, documents: torch.Tensor | None = None,
               instances: torch.Tensor | None = None, flip: bool = False) -> torch.Tensor:
        """Final hidden states [B, T, d]. With a KV cache (causal only) `ids` are the tokens after the ones it
        holds: they take the next positions and attend over the cached keys and values, which they extend.
        `documents` [B, T] (causal only): each token's document number; a token attends only to earlier tokens of
        its own document (document_mask.py). `instances` [B, T] (models with turnover_p > 0): each token's
        training-instance id, whose turn-over mask (flipped with `flip`) the FFNs apply; None: the whole network."""
        ids = integer_ids(ids)
        check_shift(shift, ids.shape[0])
        if cache is not None and (not self.causal or key_mask is not None or documents is not None):
            raise KobaError("a KV cache is for causal decoding without a key mask or documents")
        if cache is not None:
            self._check_cache(cache)
        if key_mask is not None:
            key_mask = bool_key_mask(key_mask, ids)
        if documents is not None:
            if not self.causal or key_mask is not None:
                raise KobaError("documents mask causal attention; the encoder's key mask does not combine with it")
            key_mask = same_document_causal(documents)
        B, T = ids.shape
        start = cache.length if cache is not None else 0
        if start and isinstance(self.positions, RotaryPositions) and self.positions.switches(start, start + T, shift):
            # LongRoPE outgrowing its original context: every stored key and value came from the short frequencies,
            # through every layer, so the whole sequence runs again at the long ones, as transformers' Phi-3
            # generate does (once: from then on the sequence only grows).
            everything = cache.restart(ids)
            return self.hidden(everything, shift=shift, cache=cache, instances=instances, flip=flip)[:, -T:]
        x = self.embed(ids)
        if self.config.embed_scale:  # Spike No More §4.1: make the shortcut large
            x = x * math.sqrt(self.config.d_model)
        rope = local_rope = None
        if self.local_positions is not None:
            local_rope = self.local_positions.cos_sin(T, ids.device, shift, start)
        if isinstance(self.positions, RotaryPositions):
            rope = self.positions.cos_sin(T, ids.device, shift, start)
            local_rope = local_rope or rope
        elif self.positions is not None:
            x = x + self.positions(B, T, ids.device, shift, start).to(x.dtype)
        if self.embed_norm is not None:  # Spike No More §4.2
            x = self.embed_norm(x)
        x = self.drop(x)
        if instances is not None and not self.config.turnover_p:
            raise KobaError("training-instance ids need a model with turnover_p > 0 (turn-over dropout)")
        turnover = (instances, flip) if instances is not None else None
        # Not with a cache: a recomputed block is given no cache layer, so its keys would never be stored.
        recompute = self.checkpoint_blocks and self.training and torch.is_grad_enabled() and cache is None
        for i, block in enumerate(self.blocks):
            block_rope = local_rope if block.attn.window else rope
            if recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, self.causal, key_mask, block_rope, None, turnover,
                                                      use_reentrant=False)
            else:
                x = block(x, self.causal, key_mask, block_rope, cache.layers[i] if cache is not None else None,
                          turnover)
        if cache is not None:
            cache.advance(T, ids)
        return self.final_norm(x) if self.final_norm is not None else x

    def _check_cache(self, cache: KVCache) -> None:
        """A cache built for another model runs out of layers, or drops keys a layer still attends to: a layer's
        cache window must be 0 (keep all) or at least the layer's own window, which a full layer does not have."""
        kept, seen = [layer.window for layer in cache.layers], self.config.layer_windows
        if len(kept) != len(seen) or any(k and (not s or k < s) for k, s in zip(kept, seen, strict=False)):
            raise KobaError(f"KV cache of {len(kept)} layers with windows {kept} does not fit the model's "
                            f"{len(seen)} layers with windows {seen} (build it with KVCache(config.n_layers, "
                            f"capacity, config.layer_windows))")

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= sum(p.numel() for p in self.embed.parameters())
            if self.positions is not None:
                n -= sum(p.numel() for p in self.positions.parameters())
        return n


def integer_ids(ids) -> torch.Tensor:
    """`ids` [B, T] as an index tensor: float ids (e.g. a tokenizer's output through a float pipeline) would be
    truncated silently if cast, so they are refused; narrow integer dtypes become int64, which the embedding needs."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise KobaError(f"token ids must be a [batch, time] tensor, got {shape}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise KobaError(f"token ids must be an integer tensor, got {ids.dtype}")
    return ids if ids.dtype in (torch.int32, torch.int64) else ids.long()


def check_shift(shift, batch: int) -> None:
    """An explicit position offset is None, an int, or an integer tensor of one offset or one per sequence [batch];
    any other shape ends in a raw broadcasting error deep in the positions."""
    if shift is None:
        return
    if isinstance(shift, torch.Tensor):
        if shift.dtype == torch.bool or shift.is_floating_point() or shift.is_complex():
            raise KobaError(f"shift must be an int or a [batch] integer tensor, got a {shift.dtype} tensor")
        if shift.dim() == 0 or tuple(shift.shape) == (batch,):
            return
        raise KobaError(f"shift must be an int or a [batch] integer tensor, got shape {tuple(shift.shape)} for a "
                        f"batch of {batch}")
    if isinstance(shift, bool) or not isinstance(shift, numbers.Integral):
        raise KobaError(f"shift must be an int or a [batch] integer tensor, got {shift!r}")


def bool_key_mask(mask, ids: torch.Tensor) -> torch.Tensor:
    """`mask` [B, T] as bool, True = a real token: bool, or 0/1 in any integer or float dtype (a Hugging Face
    tokenizer's attention_mask is int64). SDPA would add a float mask to the logits as a bias and reject an integer
    one, so anything but 0 and 1 is refused rather than guessed at."""
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise KobaError(f"key mask must be a [batch, time] tensor like the ids {tuple(ids.shape)}, got {shape}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
        raise KobaError(f"key mask must be bool or hold only 0 and 1 (1 = a real token), got {mask.dtype} with "
                        f"other values")
    return mask.bool()


class TransformerLM(Transformer):
    """Decoder-only language model: logits for the next token at every position."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=config.head_bias)
        init_weights(self, config)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, shift=None,
                cache: KVCache | None = None, documents: torch.Tensor | None = None,
                instances: torch.Tensor | None = None, flip: bool = False):
        """Returns (logits [B, T, V], mean cross-entropy over targets != -100, or None). With config.loss_chunk > 0
        and targets given, returns (None, loss): the head and the loss run chunk by chunk and the logits never
        exist whole (chunked_cross_entropy.py); call without targets for logits. `cache`, `documents`,
        `instances`, `flip`: see `hidden`."""
        hidden = self.hidden(ids, shift=shift, cache=cache, documents=documents, instances=instances, flip=flip)
        if targets is not None and self.config.loss_chunk:
            rows, weight = hidden.reshape(-1, hidden.size(-1)), self.head.weight
            if self.head.bias is not None:  # W h + b = [W b] [h; 1]: the chunked loss takes a weight only (this
                rows = torch.cat([rows, rows.new_ones(len(rows), 1)], dim=1)  # copies W once per forward)
                weight = torch.cat([weight, self.head.bias[:, None]], dim=1)
            return None, chunked_cross_entropy(rows, weight, targets.reshape(-1), self.config.loss_chunk,
                                               softcap=self.config.logit_softcap)
        logits = self.head(hidden)
        if self.config.logit_softcap:
            logits = soft_cap(logits, self.config.logit_softcap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss


class TextEncoder(Transformer):
    """Bidirectional encoder; `encode` pools token states into one sentence vector per text."""

    causal = False

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        init_weights(self, config)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None, shift=None) -> torch.Tensor:
        """Token states [B, T, d]; mask [B, T] marks real tokens, bool or 0/1 (None: all real)."""
        return self.hidden(ids, key_mask=mask, shift=shift)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
        """Sentence vectors [B, d]: mean over real tokens (or first / last real token, per config.pool); the padding
        may be on either side."""
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else bool_key_mask(mask, ids)
        if not bool(mask.any(dim=1).all()):
            raise KobaError("encoder: every text needs at least one token")
        states = self(ids, mask)
        if self.config.pool in ("first", "last"):
            # argmax gives each row's first True (the reversed row's for the last): padding may be on either side
            at = mask.int().argmax(1) if self.config.pool == "first" else \
                ids.shape[1] - 1 - mask.flip(1).int().argmax(1)
            pooled = states[torch.arange(ids.shape[0], device=ids.device), at]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1)
        return F.normalize(pooled, dim=-1) if normalize else pooled
