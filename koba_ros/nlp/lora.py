"""LoRA fine-tuning (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3).

A pre-trained linear map W0 (d_out x d_in) stays frozen and learns a low-rank update instead:

    h = W0 x + (alpha / r) B A x,    A: r x d_in,  B: d_out x r,  r << min(d_in, d_out)

A starts Gaussian and B at zero (§4.1), so training starts from exactly the pre-trained function, and only
r (d_in + d_out) numbers per map are trained and kept in the optimizer. `lora_rank: r` in a `koba lm train` config
(with `init_from`, the pre-trained weights) adapts the attention's qkv and output maps and the FFN's two maps of
every block; embeddings, LayerNorms and the head stay frozen. The paper adapts W_q and W_v and finds adapting more
maps at a smaller rank at least as good (§7.1).

Checkpoints hold the merged weights W0 + (alpha / r) B A under the plain model's names, so sample, eval, export,
expand and init_from read a LoRA run like any other, plus A and B in lora.safetensors to resume. The frozen W0 is the
init_from source's: a resume reads it again and checks it against the digest recorded when the run began.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from koba_ros.errors import KobaError

TARGETS = ("attn.qkv", "attn.out", "ffn.fc", "ffn.proj")


class LoRALinear(nn.Module):
    """base(x) + (alpha / r) x A^T B^T, with base frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        for p in base.parameters():
            p.requires_grad_(False)
        # A ~ N(0, 1/d_in): the update's scale then does not depend on the width (B = 0 makes it zero at first)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features, device=base.weight.device) /
                                   math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)


def add_lora(model: nn.Module, rank: int, alpha: float) -> int:
    """Freeze every parameter of `model`, wrap each block's target linear maps in LoRALinear; returns the number of
    trainable parameters (the adapters')."""
    if rank < 1:
        raise KobaError(f"lora: rank must be >= 1, got {rank}")
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        for path in TARGETS:
            owner_name, attr = path.split(".")
            owner = getattr(block, owner_name)
            setattr(owner, attr, LoRALinear(getattr(owner, attr), rank, alpha))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def split_state(state: dict, scale: float) -> tuple[dict, dict]:
    """(merged weights under the plain model's names, adapters) of a LoRA model's state dict."""
    adapters = {k: v for k, v in state.items() if k.endswith((".lora_a", ".lora_b"))}
    merged = {k.replace(".base.", "."): v for k, v in state.items() if k not in adapters}
    for name in adapters:
        if name.endswith(".lora_a"):
            prefix = name[: -len(".lora_a")]
            a, b = adapters[name].float(), adapters[prefix + ".lora_b"].float()
            base = merged[prefix + ".weight"]
            merged[prefix + ".weight"] = (base.float() + scale * (b @ a)).to(base.dtype)
    return merged, adapters
