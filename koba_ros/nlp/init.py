"""Weight initialisation: GPT-2's, and the 'small' one analysed in Spike No More.

Spike No More (Takase et al. 2023, arXiv 2312.16903, §2 and §4): the widely used small initialisation draws every
weight from N(0, sigma^2) with sigma = sqrt(2 / (5 d)) and scales the residual output projections (attention output
and FFN second layer) further by 1 / sqrt(2 N) (N layers). Embeddings drawn with that sigma are tiny, which breaks
the 'large shortcut' condition that keeps the gradient norm bounded and so invites loss spikes. The two fixes are
config flags applied in model.py: scaled embeddings (x sqrt(d), §4.1) and LayerNorm on the embeddings (§4.2).
"""
from __future__ import annotations

import math

from torch import nn

from koba_ros.nlp.embeddings import AloneEmbedding, FactorizedEmbedding


def init_std(config) -> float:
    return math.sqrt(2.0 / (5.0 * config.d_model)) if config.init == "small" else 0.02


def init_weights(model: nn.Module, config) -> None:
    if config.init == "xavier":
        _init_xavier(model, config)
    else:
        _init_normal(model, config)
    for module in model.modules():  # two-matrix embeddings keep their own init (embeddings.py), whatever the scheme
        if isinstance(module, AloneEmbedding):
            module.reset_parameters()
        elif isinstance(module, FactorizedEmbedding):
            module.reset_parameters(table_std(config))


def table_std(config) -> float:
    """The std an embedding table starts at under config.init."""
    return config.d_model ** -0.5 if config.init == "xavier" else init_std(config)


def _init_normal(model: nn.Module, config) -> None:
    std = init_std(config)
    out_std = std / math.sqrt(2.0 * config.n_layers)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, out_std if getattr(module, "is_residual_output", False) else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


def _init_xavier(model: nn.Module, config) -> None:
    """fairseq's Transformer (the setting of the B2T paper): Xavier-uniform linears, embeddings N(0, 1/d)
    meant to be used with embed_scale (x sqrt(d)), so the embedded input has unit scale."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, table_std(config))
