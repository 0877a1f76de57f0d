"""Model expansion: grow a trained model wider and deeper so that it computes exactly the same function.

Yano et al. 2025 (arXiv 2504.00623) build a model family by training a small model, expanding it to the next size
and continuing (about 25% less compute than training each size from scratch), with a smaller peak learning rate for
the larger members. The growth operator here is the standard function-preserving one:

* width d -> k·d (k integer; heads k·H with the same head size, FFN k·d_ff): every hidden vector becomes
  D(x) = [x, ..., x] (k copies). LayerNorm of D(x) equals D(LN(x)) (same mean and variance), and RMSNorm of D(x)
  equals D(RMSNorm(x)) (same mean square), so gains and biases are tiled. A linear map whose input is duplicated
  gets k column blocks W/k + e_j with sum_j e_j = 0 (exactly the same output, and the noise e breaks the symmetry
  between copies so they can learn different features, as in Net2Net: the copies of a hidden unit or head feed the
  next map through different columns, so they get different gradients); a linear map whose output is duplicated gets
  its rows tiled. Heads of D(q), D(k), D(v) are copies of the old heads, so attention is unchanged (RoPE acts inside
  a head and is unaffected; under grouped-query attention each query head keeps its group's key and value head).
  A SwiGLU unit's two rows are tiled together, so SiLU(w x) * (v x) is duplicated like a GELU unit. The output
  head's bias (Phi) belongs to the vocabulary and is kept as it is.
* depth N -> N' (Pre-LN): new blocks are copies of the block below them with their two residual output
  projections set to zero, so each new block is the identity x -> x + 0 + 0 until training moves it. Grown wider in
  the same call (k > 1), those projections are not all zero but k column blocks [e_1 ... e_k] with sum_j e_j = 0
  (noise · std of the source block's projection): still 0 on the duplicated heads and hidden units, but an exactly
  zero projection would give the copies of each head and unit identical gradients, and nothing would ever separate
  them (the widening noise acts through that projection; measured in docs/nlp.md, session 25). With sandwich
  norms (Gemma 2 and 3) the gains of the two output norms are zero instead. A new block slides its attention if the
  block it copies does. Parallel layers (GPT-NeoX; with one shared norm, Phi and GPT-J) are Pre-LN layers here:
  x + 0 + 0 with both projections zero.
"""
from __future__ import annotations

import math

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import Transformer


def lr_for_size(base_lr: float, base_width: int, width: int, power: float = 0.5) -> float:
    """A smaller peak LR for a larger member: base_lr · (base_width / width)^power."""
    return base_lr * (base_width / width) ** power


def _split_noise(shape, k: int, scale: float, g: torch.Generator) -> list[torch.Tensor]:
    if k == 1 or scale == 0:
        return [torch.zeros(shape)] * k
    noise = [torch.randn(shape, generator=g) * scale for _ in range(k - 1)]
    return noise + [-sum(noise)]


def _cancelling(shape, k: int, scale: float, g: torch.Generator) -> torch.Tensor:
    """[out, k·in] column blocks [e_1 ... e_k] with sum_j e_j = 0: 0 on a duplicated input [x, ..., x], yet each copy
    of an input feature (a head's or hidden unit's) reaches the output through its own column. All zero for k = 1."""
    out, cols = shape
    return torch.cat(_split_noise((out, cols // k), k, scale, g), dim=1)


def _widen(weight: torch.Tensor, k_in: int, k_out: int, noise: float, g: torch.Generator,
           parts: list[int] | None = None) -> torch.Tensor:
    """[out, in] -> [k_out·out, k_in·in] acting on duplicated inputs and producing duplicated outputs.

    `parts` (row counts) treats the rows as stacked blocks (q, k, v; SwiGLU's W, V) each duplicated separately."""
    rows = torch.cat([block.repeat(k_out, 1) for block in weight.split(parts or [weight.shape[0]])])
    scale = noise * rows.std().item()
    return torch.cat([rows / k_in + e for e in _split_noise(rows.shape, k_in, scale, g)], dim=1)


def _tile_vector(v: torch.Tensor, k: int, parts: list[int] | None = None) -> torch.Tensor:
    return torch.cat([block.repeat(k) for block in v.split(parts or [v.shape[0]])])


def _row_parts(name: str, config: TransformerConfig) -> list[int] | None:
    """The stacked blocks of a weight's rows: q, k, v of attn.qkv (k and v narrower under grouped-query attention),
    W and V of a SwiGLU fc; None for one block. Tiling each block separately keeps every query head with the key
    and value head of its group (new query head i and its group's head are copies of old head i mod H and its)."""
    if ".attn.qkv." in name:
        return [config.n_heads * config.head_dim] + [config.kv_heads * config.head_dim] * 2
    if ".ffn.fc." in name and config.ffn in ("swiglu", "geglu"):
        return [config.ff_dim] * 2
    return None


def expand_config(config: TransformerConfig, width_factor: int, n_layers: int) -> TransformerConfig:
    if width_factor < 1 or n_layers < config.n_layers:
        raise KobaError("expansion: width factor must be >= 1 and the new depth >= the old depth")
    if n_layers > config.n_layers and config.norm not in ("pre", "sandwich"):
        raise KobaError(f"expansion: adding layers preserves the function only for Pre-LN and sandwich norms, not "
                        f"{config.norm}")
    if width_factor > 1 and config.positions in ("sinusoidal", "shape"):
        raise KobaError("expansion: fixed sinusoidal positions cannot be widened exactly; use learned or rope")
    if width_factor > 1 and config.tie_embeddings:
        raise KobaError("expansion: widening needs untied embeddings")
    # Turn-over dropout's instance masks are drawn per layer index and FFN width (blocks.py): a grown model would give
    # every training instance another sub-network, and the influence estimates would mix the two (review 25).
    if (width_factor > 1 or n_layers > config.n_layers) and config.turnover_p > 0:
        raise KobaError("expansion: a turn-over dropout model (turnover_p > 0) cannot grow: its instances' masks "
                        "depend on each layer's index and width; train the larger model with turn-over from the start")
    data = config.to_dict()
    data.update(d_model=config.d_model * width_factor, n_heads=config.n_heads * width_factor,
                n_kv_heads=config.n_kv_heads * width_factor,
                d_ff=config.ff_dim * width_factor, n_layers=n_layers,
                alone_hidden=config.alone_hidden or 2 * config.d_model,
                alone_dim=config.alone_dim or config.d_model)
    if config.sliding_layers is not None:  # a new layer slides if the one it copies does
        data["sliding_layers"] = [i for i, (source, _) in enumerate(_layer_sources(config.n_layers, n_layers))
                                  if source in config.sliding_layers]
    return TransformerConfig.from_dict(data)


@torch.no_grad()
def expand(model: Transformer, width_factor: int = 2, n_layers: int | None = None, noise: float = 0.01,
           seed: int = 0) -> Transformer:
    """A new model of the same class, k times wider and with n_layers blocks, computing the same function."""
    old = model.config
    new_config = expand_config(old, width_factor, n_layers or old.n_layers)
    k, g = width_factor, torch.Generator().manual_seed(seed)
    big = type(model)(new_config)
    source = {name: t.detach().float().cpu() for name, t in model.state_dict().items()}
    layer_map = _layer_sources(old.n_layers, new_config.n_layers)
    target = {}
    for name, tensor in big.state_dict().items():
        src_name, zero = name, False
        if name.startswith("blocks."):
            index, rest = name.split(".", 2)[1:]
            src_layer, is_new = layer_map[int(index)]
            src_name = f"blocks.{src_layer}.{rest}"
            zero = is_new and rest.startswith(NEW_BLOCK_ZEROS[old.norm])
        value = _expand_tensor(src_name, source[src_name], k, noise, g, old)
        if zero:
            value = _cancelling(value.shape, k, noise * source[src_name].std().item(), g) \
                if value.dim() == 2 else torch.zeros_like(value)
        target[name] = value
        if target[name].shape != tensor.shape:
            raise KobaError(f"expansion: {name} became {tuple(target[name].shape)}, expected {tuple(tensor.shape)}")
    big.load_state_dict(target)
    return big.to(next(model.parameters()).device)


# What makes a new block the identity: Pre-LN's sub-layer outputs are 0 with zero output projections. Sandwich
# norms' output norms are then 0 with zero gains, and the projections keep their copies: zero projections under a
# zero-gain norm would leave every weight of the block without a gradient, for good.
NEW_BLOCK_ZEROS = {"pre": ("attn.out.", "ffn.proj."), "sandwich": ("attn_out_norm.", "ffn_out_norm.")}


def _layer_sources(old_layers: int, new_layers: int) -> list[tuple[int, bool]]:
    """For each new block: (old block it comes from, whether it is a new identity block). New blocks are spread
    evenly, each placed right above the old block it copies."""
    extra = new_layers - old_layers
    per_layer = [extra // old_layers + (1 if i < extra % old_layers else 0) for i in range(old_layers)]
    mapping = []
    for i, n_new in enumerate(per_layer):
        mapping.append((i, False))
        mapping.extend((i, True) for _ in range(n_new))
    return mapping


def _expand_tensor(name: str, t: torch.Tensor, k: int, noise: float, g: torch.Generator, old) -> torch.Tensor:
    if k == 1 or name.endswith(("books", "word_codes", "shared", "inv_freq")) or ".attn.q_norm." in name \
            or ".attn.k_norm." in name:  # QK-norm gains act within a head, and heads keep their width
        return t.clone()
    if name in ("embed.weight", "positions.table.weight"):       # rows are vectors of the residual stream
        scale = 1 / math.sqrt(k) if old.embed_scale and name == "embed.weight" else 1.0
        return t.repeat(1, k) * scale
    if name == "embed.table.weight":                           # factorized: the small table stays
        return t.clone()
    if name == "head.weight":                                  # duplicated input, vocabulary output
        return _widen(t, k, 1, noise, g)
    if name == "head.bias":                                    # one per vocabulary id, as before
        return t.clone()
    if name in ("embed.proj.weight", "embed.w2.weight"):       # output joins the residual stream
        scale = 1 / math.sqrt(k) if old.embed_scale else 1.0
        return t.repeat(k, 1) * scale
    if name.startswith("embed."):                              # ALONE's w1: internal, unchanged
        return t.clone()
    parts = _row_parts(name, old)
    if t.dim() == 2:
        return _widen(t, k, k, noise, g, parts)
    return _tile_vector(t, k, parts)                           # biases and LayerNorm / RMSNorm gains / biases
