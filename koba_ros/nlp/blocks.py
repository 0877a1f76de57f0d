"""Transformer layers with four layer-norm placements: Post-LN, Pre-LN, B2T and sandwich; LayerNorm or RMSNorm,
a GELU, SwiGLU or GEGLU feed-forward network, multi-head or grouped-query attention."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from koba_ros.errors import KobaError
from koba_ros.nlp.positions import apply_rope
from koba_ros.nlp.turnover_dropout import TurnOverDropout


def norm_layer(config, width: int = 0) -> nn.Module:
    """LayerNorm, or RMSNorm (Zhang & Sennrich 2019, eq. 4: x / RMS(x) * g, RMS(x) = sqrt(mean(x^2) + eps); no
    centring and no bias), as `config.norm_type` says, over `width` features (0: d_model). Every norm of the model
    is of that type."""
    width = width or config.d_model
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(width, eps=config.norm_eps)
    return nn.LayerNorm(width, eps=config.norm_eps, bias=config.bias)


class SelfAttention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (flash / memory-efficient kernels on GPU).

    With n_kv_heads < n_heads it is grouped-query attention (Ainslie et al. 2023, "GQA", §2.2): keys and values have
    n_kv_heads heads, each shared by a group of n_heads / n_kv_heads query heads (1 key/value head: multi-query
    attention, Shazeer 2019). qkv then projects to (n_heads + 2 n_kv_heads) head widths, and a KV cache stores
    n_kv_heads / n_heads of the keys and values multi-head attention would. A head's width is config.head_dim
    (d_model / n_heads unless `d_head` says otherwise); out maps the n_heads heads back to d_model.

    With `qk_norm`, each head's query and key are normalised before RoPE and the dot product (QK normalisation,
    Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion Parameters", §2: softmax(LN(X W_Q) LN(X W_K)^T
    / sqrt(d_head)), which bounds the attention logits that otherwise grow until attention collapses to one key;
    Qwen3 uses RMSNorm over each head, one gain vector shared by all heads).

    With `attention_window` W > 0, attention is local (Beltagy et al. 2020, "Longformer", §3.1, sliding window;
    Mistral 7B's causal form): a causal query sees the W latest tokens, itself included, whatever the cache holds;
    an encoder's query the tokens fewer than W positions away. Memory and time stay those of full attention here (a
    mask over SDPA); what changes is what each token can see."""

    def __init__(self, config, index: int = 0):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.n_kv_heads, self.head_dim = config.kv_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim,
                             bias=config.has_qkv_bias)
        self.out = nn.Linear(config.attn_dim, config.d_model, bias=config.bias)
        self.out.is_residual_output = True  # init.py scales these (1/sqrt(2N))
        self.window = config.layer_window(index)
        self.scale = config.attn_scale_dim ** -0.5 if config.attn_scale_dim else None  # None: SDPA's 1/sqrt(d_head)
        self.softcap = config.attn_softcap
        self.q_norm = norm_layer(config, self.head_dim) if config.qk_norm else None
        self.k_norm = norm_layer(config, self.head_dim) if config.qk_norm else None

    def forward(self, x, causal: bool, key_mask=None, rope=None, cache=None):
        """cache (kv_cache.LayerKV, causal decoding only): x holds the tokens after the `past` ones stored there;
        their keys and values are stored too, and they attend over all past tokens and, causally, each other.
        key_mask: [B, T] True = a real token, or [B, T, T] True = query i may attend key j (causality included)."""
        if key_mask is not None and key_mask.dtype != torch.bool:  # SDPA would add a float one to the logits
            raise KobaError(f"attention key mask must be bool (True = may attend), got {key_mask.dtype}")
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, self.n_heads + 2 * self.n_kv_heads, self.head_dim).transpose(1, 2).split(
            [self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        mask, past = None, 0
        if cache is not None:
            past = cache.owner.length
            k, v = cache.extend(k, v)  # the stored keys end at position past + T - 1 (a window's cache: the last few)
            if past and T > 1:  # query i sits at position past + i: it may see keys up to there
                k_pos = torch.arange(past + T - k.shape[2], past + T, device=x.device)
                mask = k_pos[None, :] <= torch.arange(past, past + T, device=x.device)[:, None]
        if key_mask is not None and key_mask.dim() == 3:  # a full [B, T, T] mask (document masking)
            mask = key_mask[:, None]
        elif key_mask is not None:  # [B, T] True = real token; bool attn_mask: True = may attend
            mask = key_mask[:, None, None, :]
            if causal:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if self.window:  # sliding window: query at position p sees keys at p - window < position <= p
            q_pos = torch.arange(past, past + T, device=x.device)[:, None]
            k_pos = torch.arange(past + T - k.shape[2], past + T, device=x.device)[None, :]
            near = (q_pos - k_pos < self.window) & (k_pos <= q_pos) if causal else \
                (q_pos - k_pos).abs() < self.window
            mask = near if mask is None else mask & near
        # With a past, one query sees every stored key: no mask at all. is_causal only without a past (SDPA aligns
        # its causal mask to the top left, which is right only when queries and keys start together).
        dropout = self.dropout if self.training else 0.0
        if self.softcap:
            y = softcapped_attention(q, k, v, mask, causal and mask is None and not past, self.scale or
                                     self.head_dim ** -0.5, self.softcap, dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None and not past,
                                               dropout_p=dropout, scale=self.scale,
                                               enable_gqa=self.n_kv_heads != self.n_heads)
        return self.out(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


def soft_cap(x: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(x / cap): about x while |x| << cap, never beyond ±cap (Gemma Team 2024, "Gemma 2", §2: logit
    soft-capping, on attention logits and on the final logits; the tanh bound of Bello et al. 2016)."""
    return cap * torch.tanh(x / cap)


def softcapped_attention(q, k, v, mask, causal: bool, scale: float, cap: float, dropout: float) -> torch.Tensor:
    """softmax(soft_cap(q k^T * scale) + mask) v, written out: SDPA's kernels cannot cap the logits before the
    softmax. Grouped key/value heads are repeated to the query heads (as SDPA's enable_gqa shares them); the softmax
    is taken in fp32."""
    if k.shape[1] != q.shape[1]:
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
    logits = soft_cap((q @ k.transpose(-2, -1)).float() * scale, cap)
    if causal:
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=-1)
    if mask is not None:  # a query that may see no key (an encoder's padding beyond every window) gets zeros, as
        weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)  # from SDPA, not a softmax's NaN
    return F.dropout(weights, dropout).to(v.dtype) @ v


class FeedForward(nn.Module):
    """proj(GELU(fc(x))) (GELU's tanh form, GPT-2's; `gelu_erf`: its exact form, Hendrycks & Gimpel 2016, GPT-NeoX's);
    or a gated unit (Shazeer 2020, "GLU Variants Improve Transformer", §2): with `swiglu` proj(SiLU(x W) * (x V))
    (FFN_SwiGLU, Llama's), with `geglu` proj(GELU(x W) * (x V)) (FFN_GEGLU, Gemma's; GELU's tanh form, as GPT-2's),
    where fc computes [x W, x V] in one matrix of 2 d_ff rows.

    With turnover_p > 0 the hidden units go through turn-over dropout (Kobayashi et al. 2020) when the caller names
    each token's training instance (`turnover` = (instances [B, T], flip)): an FFN unit's fc row(s) and proj column
    then learn only from the documents whose mask keeps it. Without instances it is the plain FFN."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, bias: bool, turnover_p: float = 0.0, salt: int = 0,
                 turnover_seed: int = 0, ffn: str = "gelu"):
        super().__init__()
        self.gated = ffn in ("swiglu", "geglu")
        self.activation = F.silu if ffn == "swiglu" else F.gelu if ffn == "gelu_erf" else \
            partial(F.gelu, approximate="tanh")
        self.fc = nn.Linear(d_model, 2 * d_ff if self.gated else d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.proj.is_residual_output = True
        self.drop = nn.Dropout(dropout)
        self.turnover = TurnOverDropout(d_ff, salt=salt, p=turnover_p, seed=turnover_seed) if turnover_p else None

    def forward(self, x, turnover=None):
        if self.gated:
            gate, up = self.fc(x).chunk(2, dim=-1)
            h = self.activation(gate) * up
        else:
            h = self.activation(self.fc(x))
        if turnover is not None and self.turnover is not None:
            h = self.turnover(h, *turnover)
        return self.drop(self.proj(h))


class Block(nn.Module):
    """One layer; `norm` picks where LayerNorm goes (x is the layer input):

    pre  (Xiong et al. 2020):          h = x + Attn(LN(x));      y = h + FFN(LN(h))
    post (Vaswani et al. 2017):        h = LN(x + Attn(x));      y = LN(h + FFN(h))
    b2t  (Takase et al. 2022, eq. 5):  h = LN(x + Attn(x));      y = LN(h + FFN(h) + x)
    sandwich (Ding et al. 2021):       h = x + LN(Attn(LN(x)));  y = h + LN(FFN(LN(h)))
    pre, parallel_residual:            y = x + Attn(LN(x)) + FFN(LN'(x))   (GPT-NeoX; PaLM's parallel layers)
      with parallel_shared_norm:       y = x + Attn(LN(x)) + FFN(LN(x))    (GPT-J, Phi-1 and Phi-2: no ln2)
    B2T keeps Post-LN's normalised outputs but adds a bottom-to-top shortcut from the layer input past both LNs
    of the attention sub-layer, so gradients reach lower layers without shrinking through every LN. Sandwich-LN
    ("CogView", Ding et al. 2021, §2.4) keeps Pre-LN's shortcut and normalises what each sub-layer adds to it, which
    bounds how fast the residual stream can grow (Gemma 2 and 3 use it with RMSNorm).
    """

    def __init__(self, config, index: int = 0):
        super().__init__()
        self.norm, self.parallel = config.norm, config.parallel_residual
        self.ln1 = norm_layer(config)
        self.ln2 = None if config.parallel_shared_norm else norm_layer(config)
        self.attn = SelfAttention(config, index)
        sandwich = config.norm == "sandwich"
        self.attn_out_norm = norm_layer(config) if sandwich else None
        self.ffn_out_norm = norm_layer(config) if sandwich else None
        self.ffn = FeedForward(config.d_model, config.ff_dim, config.dropout, config.bias, config.turnover_p, index,
                               config.turnover_seed, ffn=config.ffn)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, causal: bool, key_mask=None, rope=None, cache=None, turnover=None):
        if self.parallel:
            normed = self.ln1(x)
            attended = self.drop(self.attn(normed, causal, key_mask, rope, cache))
            return x + attended + self.ffn(normed if self.ln2 is None else self.ln2(x), turnover)
        if self.norm == "pre":
            h = x + self.drop(self.attn(self.ln1(x), causal, key_mask, rope, cache))
            return h + self.ffn(self.ln2(h), turnover)
        if self.norm == "sandwich":
            h = x + self.drop(self.attn_out_norm(self.attn(self.ln1(x), causal, key_mask, rope, cache)))
            return h + self.ffn_out_norm(self.ffn(self.ln2(h), turnover))
        h = self.ln1(x + self.drop(self.attn(x, causal, key_mask, rope, cache)))
        if self.norm == "post":
            return self.ln2(h + self.ffn(h, turnover))
        return self.ln2(h + self.ffn(h, turnover) + x)
