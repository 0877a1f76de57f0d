"""Llama-shaped models to and from Hugging Face `LlamaForCausalLM` (and `Qwen2ForCausalLM`, `Qwen3ForCausalLM`,
`MistralForCausalLM`, the Gemmas, `Phi3ForCausalLM`), tensor for tensor (used by `koba lm export` and `koba lm
import` in hf_gpt2.py, which check the logits before writing anything).

A model is Llama-shaped when it is Pre-LN with RMSNorm, a SwiGLU FFN, RoPE, a plain embedding table and no
Spike-No-More embedding fixes (any number of key/value heads). `bias: true` becomes transformers' `attention_bias` and
`mlp_bias` (biases on q, k, v, o and on gate, up, down; RMSNorm has none either way). Biases on q, k and v only
(`bias: false, qkv_bias: true`) are Qwen2's attention: such a model goes out and comes in as `Qwen2ForCausalLM`,
whose tensors have the same names. Normalised queries and keys without biases (`qk_norm: true`, usually with
`d_head` wider than d_model / n_heads) are Qwen3's attention, `Qwen3ForCausalLM`; sliding-window attention
without biases (`attention_window`) is Mistral's, `MistralForCausalLM` (Qwen2 and Qwen3 may slide on some layers:
`sliding_layers`, their layer_types). Gemma's layers are a Llama's with GEGLU and scaled embeddings
(`GemmaForCausalLM`); Gemma 2's add sandwich norms, soft-capped logits, an attention scale of their own and a window
on every other layer (`Gemma2ForCausalLM`); Gemma 3's add QK-norm and a RoPE base of the sliding layers' own
(`Gemma3ForCausalLM`, the text model). Phi-3's layers are a Llama's, stored fused (`Phi3ForCausalLM`: q, k and v
in one qkv_proj, gate and up in one gate_up_proj; read and written here as views of those rows under the Llama
names), that may rotate only the first `rotary_dim` components of each head (partial_rotary_factor) and may use
LongRoPE (`rope_scaling: longrope`, positions.longrope_inv_freq); a model goes out as one when it uses LongRoPE or
says `hf_family: phi3` (an imported Phi-3 does). Names (each bias goes with its weight):

    embed.weight                  model.embed_tokens.weight
    blocks.i.ln1 / ln2            model.layers.i.input_layernorm / post_attention_layernorm
    (sandwich) ln1, attn_out_norm model.layers.i.input_layernorm, post_attention_layernorm,
      ln2, ffn_out_norm             pre_feedforward_layernorm, post_feedforward_layernorm     (Gemma 2 and 3)
    blocks.i.attn.qkv             model.layers.i.self_attn.q_proj, k_proj, v_proj   (our rows stack q, k, v;
                                                                                     Phi-3: qkv_proj, stacked too)
    blocks.i.attn.out             model.layers.i.self_attn.o_proj
    blocks.i.attn.q_norm / k_norm model.layers.i.self_attn.q_norm / k_norm             (Qwen3)
    blocks.i.ffn.fc               model.layers.i.mlp.gate_proj, up_proj             (our rows stack W, V;
                                                                                     Phi-3: gate_up_proj, stacked too)
    blocks.i.ffn.proj             model.layers.i.mlp.down_proj
    final_norm                    model.norm
    head.weight                   lm_head.weight

RoPE pairs differ: ours rotates interleaved pairs (2j, 2j+1) of a head (positions.py, Su et al. eq. 34), Hugging
Face's "rotate_half" rotates (j, j + d/2), both at angle p·theta_j. Reordering each q and k head's rows to
[evens, odds] turns one into the other; a dot product of q and k is unchanged by reordering both alike, and v and
o_proj are untouched. A head's RMSNorm is unchanged by reordering its components too, if its gains are reordered
with them: q_norm and k_norm gains are reordered like one head's rows. With RoPE on the first r components only
(`rotary_dim`), those r are reordered and the rest keep their order (`rope_rows`).
"""
from __future__ import annotations

import math

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.positions import yarn_attention_factor

LLAMA_SHAPE = {"norm": "pre", "norm_type": "rmsnorm", "ffn": "swiglu", "positions": "rope", "embedding": "table",
               "embed_scale": False, "embed_norm": False, "parallel_residual": False, "rotary_dim": 0,
               "head_bias": False}
PHI3_SHAPE = {key: value for key, value in LLAMA_SHAPE.items() if key != "rotary_dim"}  # may rotate part of a head


# Gemma (1): a Llama's layers with a GEGLU FFN and embeddings scaled by sqrt(d) (Spike No More's first fix, §4.1);
# its RMSNorm stores g - 1 (it computes x / RMS(x) * (1 + w)).
GEMMA_SHAPE = {**LLAMA_SHAPE, "ffn": "geglu", "embed_scale": True}


def gemma_version(config: TransformerConfig) -> int:
    """1 for Gemma 1's shape; 2 for Gemma 2's (its layers also normalise each sub-layer's output: `norm:
    sandwich`); 3 for Gemma 3's (Gemma 2's with QK-norm); 0 for anything else."""
    if not all(getattr(config, key) == value for key, value in GEMMA_SHAPE.items() if key != "norm"):
        return 0
    if config.norm == "sandwich":
        return 3 if config.qk_norm else 2
    return 1 if config.norm == "pre" else 0


def is_gemma_shaped(config: TransformerConfig) -> bool:
    return gemma_version(config) > 0


def wants_phi3(config: TransformerConfig) -> bool:
    """Whether export writes a Phi3ForCausalLM: LongRoPE is Phi-3's (transformers' other families keep the keys they
    cached when a sequence outgrows the original context; Phi-3's generate recomputes them, as our cache does), and
    `hf_family: phi3` asks for it."""
    return config.hf_family == "phi3" or config.rope_scaling == "longrope"


def is_llama_shaped(config: TransformerConfig) -> bool:
    """Llama-shaped, or Gemma-shaped (a Llama with GEGLU and scaled embeddings), or Phi-3-shaped (a Llama that may
    rotate part of each head): every tensor maps one to one."""
    shape = PHI3_SHAPE if wants_phi3(config) else LLAMA_SHAPE
    return all(getattr(config, key) == value for key, value in shape.items()) or is_gemma_shaped(config)


def _head_order(head_dim: int) -> torch.Tensor:
    """Hugging Face's row i of a q or k head is our row order[i]: the even components, then the odd ones."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _reorder_heads(rows: torch.Tensor, head_dim: int, order: torch.Tensor) -> torch.Tensor:
    """Reorders the rows of each head of a weight (rows x inputs) or a bias (rows)."""
    heads = rows.reshape(-1, head_dim, *rows.shape[1:])
    return heads[:, order].reshape(rows.shape)


def rope_rows(config: TransformerConfig) -> torch.Tensor:
    """Their row i of a q or k head is our row order[i]: the rotated part [evens, odds], then the rest as it is
    (the whole head [evens, odds] when RoPE rotates all of it)."""
    return torch.cat([_head_order(config.rope_dim), torch.arange(config.rope_dim, config.head_dim)])


def qkv_to_hf(rows: torch.Tensor, config: TransformerConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """transformers' q, k and v rows (weight or bias) of our stacked attn.qkv rows: q and k heads reordered to
    rotate_half's pairs."""
    q, k, v = rows.split([config.n_heads * config.head_dim] + [config.kv_heads * config.head_dim] * 2)
    order = rope_rows(config)
    return _reorder_heads(q, config.head_dim, order), _reorder_heads(k, config.head_dim, order), v


def qkv_from_hf(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: TransformerConfig) -> torch.Tensor:
    """Our stacked attn.qkv rows of transformers' q, k and v rows (the inverse of qkv_to_hf)."""
    back = torch.argsort(rope_rows(config))
    return torch.cat([_reorder_heads(q, config.head_dim, back), _reorder_heads(k, config.head_dim, back), v])


def rotated_components(head_dim: int, partial_rotary_factor: float, family: str) -> int:
    """Our rotary_dim of transformers' partial_rotary_factor (they rotate int(head_dim * factor) components; 0: all
    of them), refused in one line where that is not an even number >= 2."""
    rotary = int(head_dim * partial_rotary_factor)
    if rotary % 2 or rotary < 2 or rotary > head_dim:
        raise KobaError(f"import: this {family} rotates {rotary} components of each head; only an even number >= 2 "
                        "is supported")
    return 0 if rotary == head_dim else rotary


def architecture(config: TransformerConfig) -> str:
    """"llama" (biases everywhere or nowhere), "qwen2" (on q, k and v only), "qwen3" (normalised queries and keys,
    no biases), "mistral" (sliding-window attention, no biases), a Gemma, or "phi3" (`wants_phi3`); one line for
    anything else."""
    if wants_phi3(config):
        return _phi3_architecture(config)
    if not is_llama_shaped(config):
        wrong = {k: getattr(config, k) for k, v in LLAMA_SHAPE.items() if getattr(config, k) != v}
        raise KobaError(f"export: a Llama needs {LLAMA_SHAPE}; this model has {wrong}")
    version = gemma_version(config)
    if version:
        if config.bias or config.has_qkv_bias:
            raise KobaError("export: a Gemma has no biases; this model has them")
        if version == 1 and (config.qk_norm or config.attention_window or _gemma2_options(config)):
            raise KobaError("export: Gemma 1 has no QK-norm, no sliding window, no soft-capping and no attention "
                            "scale of its own (Gemma 2 and 3, with norm: sandwich, do); this model has one")
        if version == 2 and config.rope_local_theta:
            raise KobaError("export: Gemma 2 rotates every layer alike; a RoPE base of the sliding layers' own "
                            "(rope_local_theta) is Gemma 3's, which has QK-norm")
        return "gemma" if version == 1 else f"gemma{version}"
    if _gemma2_options(config) or config.rope_local_theta:
        raise KobaError(f"export: soft-capping, an attention scale of its own and a local RoPE base are Gemma 2's and "
                        f"3's ({GEMMA_SHAPE} with norm: sandwich); this model has them without that shape")
    some_layers = config.sliding_layers is not None and len(config.sliding_layers) < config.n_layers
    if config.qk_norm:
        if config.bias or config.has_qkv_bias:
            raise KobaError("export: normalised queries and keys are Qwen3's attention, which has no biases here; "
                            "this model has biases")
        return "qwen3"
    if config.has_qkv_bias and not config.bias:
        if config.d_head and config.d_head * config.n_heads != config.d_model:
            raise KobaError(f"export: Qwen2's heads fill its width; this model's {config.n_heads} heads of "
                            f"{config.d_head} do not fill {config.d_model}")
        return "qwen2"
    if config.bias and not config.has_qkv_bias:
        raise KobaError("export: biases everywhere but on q, k and v are neither a Llama's nor a Qwen2's")
    if config.attention_window:
        if config.bias:
            raise KobaError("export: sliding-window attention is Mistral's, which has no biases (or Qwen2's, with "
                            "biases on q, k and v only); this model has biases everywhere")
        if some_layers:
            raise KobaError("export: a window on some layers only is Qwen2's, Qwen3's or Gemma 2's and 3's; a Llama "
                            "without biases or QK-norm is a Mistral, whose window covers every layer")
        return "mistral"
    return "llama"


def _phi3_architecture(config: TransformerConfig) -> str:
    """"phi3", or one line naming what Phi3ForCausalLM cannot compute."""
    wrong = {k: getattr(config, k) for k, v in PHI3_SHAPE.items() if getattr(config, k) != v}
    if wrong:
        raise KobaError(f"export: a Phi-3 (hf_family phi3, or LongRoPE) needs {PHI3_SHAPE}; this model has {wrong}")
    extras = {"bias": config.bias, "qkv_bias": config.has_qkv_bias, "qk_norm": config.qk_norm,
              "sliding_layers": config.sliding_layers is not None and len(config.sliding_layers) < config.n_layers,
              "rope_local_theta": config.rope_local_theta,
              "attn_softcap": config.attn_softcap, "logit_softcap": config.logit_softcap,
              "attn_scale_dim": config.attn_scale_dim,
              "d_head": config.d_head if config.head_dim * config.n_heads != config.d_model else 0}
    if any(extras.values()):
        raise KobaError(f"export: Phi-3 has no biases, no QK-norm, a window on every layer or none, one RoPE, no "
                        f"soft-capping, its head width's attention scale and heads that fill its width; this model "
                        f"has {({k: v for k, v in extras.items() if v})}")
    if config.rope_scaling not in ("none", "longrope"):
        raise KobaError(f"export: Phi-3's RoPE is plain or longrope; this model's is {config.rope_scaling}")
    return "phi3"


def _gemma2_options(config: TransformerConfig) -> bool:
    return bool(config.attn_softcap or config.logit_softcap or config.attn_scale_dim)


def layer_types(config: TransformerConfig) -> list[str]:
    """transformers' layer_types: each layer's "sliding_attention" or "full_attention"."""
    return ["sliding_attention" if window else "full_attention" for window in config.layer_windows]


def llama_config(config: TransformerConfig):
    """transformers' LlamaConfig (or Qwen2Config, Qwen3Config, see `architecture`) of a Llama-shaped model."""
    common = dict(vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.ff_dim,
                  num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
                  num_key_value_heads=config.kv_heads, hidden_act="silu", max_position_embeddings=config.max_len,
                  rms_norm_eps=config.norm_eps, rope_parameters=rope_parameters(config),
                  tie_word_embeddings=config.tie_embeddings, attention_dropout=config.dropout, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None)
    kind = architecture(config)
    windows = dict(sliding_window=config.attention_window or None, layer_types=layer_types(config))
    qwen_windows = dict(windows, use_sliding_window=bool(config.attention_window))
    sliding = [i for i, window in enumerate(config.layer_windows) if window]
    if sliding and sliding == list(range(sliding[0], config.n_layers)):  # Qwen's own rule says the same: layers
        qwen_windows["max_window_layers"] = sliding[0]  # from max_window_layers up slide (for readers without
        #                                                 layer_types)
    if kind == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common, **qwen_windows)
    if kind == "gemma":
        from transformers import GemmaConfig

        return GemmaConfig(**{**common, "hidden_act": "gelu_pytorch_tanh"}, head_dim=config.head_dim,
                           attention_bias=False)
    if kind in ("gemma2", "gemma3"):
        from transformers import Gemma2Config, Gemma3TextConfig

        # transformers' Gemma 2 and 3 build the sliding mask whatever the layers: a window is needed even when no
        # layer slides (the context: sliding over all of it is full attention)
        gemma = dict(common, hidden_activation="gelu_pytorch_tanh", head_dim=config.head_dim, attention_bias=False,
                     query_pre_attn_scalar=config.attn_scale_dim or config.head_dim,
                     attn_logit_softcapping=config.attn_softcap or None,
                     final_logit_softcapping=config.logit_softcap or None,
                     **dict(windows, sliding_window=config.attention_window or config.max_len))
        del gemma["hidden_act"]
        if kind == "gemma2":
            return Gemma2Config(**gemma)
        local = {"rope_type": "default", "rope_theta": float(config.rope_local_theta)} if config.rope_local_theta \
            else rope_parameters(config)
        return Gemma3TextConfig(**{**gemma, "rope_parameters": {"full_attention": rope_parameters(config),
                                                                 "sliding_attention": local}},
                                use_bidirectional_attention=False)
    if kind == "phi3":
        from transformers import Phi3Config

        # transformers sets rope_parameters' original_max_position_embeddings from this one (default 4096)
        original = dict(original_max_position_embeddings=config.rope_original_max_len) \
            if config.rope_scaling == "longrope" else {}
        rope = {**rope_parameters(config), "partial_rotary_factor": config.rope_dim / config.head_dim}
        return Phi3Config(**{**common, "rope_parameters": rope}, sliding_window=config.attention_window or None,
                          resid_pdrop=config.dropout, embd_pdrop=config.dropout, **original)
    if kind == "mistral":
        from transformers import MistralConfig

        return MistralConfig(**common, head_dim=config.head_dim, sliding_window=config.attention_window)
    if kind == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**common, head_dim=config.head_dim, attention_bias=False, **qwen_windows)
    from transformers import LlamaConfig

    return LlamaConfig(**common, head_dim=config.head_dim, attention_bias=config.bias, mlp_bias=config.bias)


LLAMA3_KEYS = {"factor": "rope_factor", "low_freq_factor": "rope_low_freq_factor",
               "high_freq_factor": "rope_high_freq_factor", "original_max_position_embeddings": "rope_original_max_len"}


def rope_parameters(config: TransformerConfig, family: str = "") -> dict:
    """transformers' rope_parameters of our RoPE: its base, and its scaling (llama3, linear, yarn or longrope) where
    used. `family`: a family other than Phi-3, for which LongRoPE is refused in one line (see `wants_phi3`)."""
    if config.rope_scaling == "longrope":
        if family:
            raise KobaError(f"export: LongRoPE (rope_scaling longrope) goes out as Phi-3, whose generate recomputes "
                            f"the cache when a sequence outgrows its original context; a {family} cannot have it")
        rope = {"rope_type": "longrope", "rope_theta": float(config.rope_theta),
                "short_factor": [float(f) for f in config.rope_short_factor],
                "long_factor": [float(f) for f in config.rope_long_factor], "factor": float(config.rope_factor),
                "original_max_position_embeddings": config.rope_original_max_len}
        return {**rope, "attention_factor": float(config.rope_attention_factor)} if config.rope_attention_factor \
            else rope
    if config.rope_scaling == "llama3":
        return {"rope_type": "llama3", "rope_theta": float(config.rope_theta),
                **{theirs: getattr(config, ours) for theirs, ours in LLAMA3_KEYS.items()}}
    if config.rope_scaling == "linear":
        return {"rope_type": "linear", "rope_theta": float(config.rope_theta), "factor": float(config.rope_factor)}
    if config.rope_scaling == "yarn":  # attention_factor always written out, so transformers derives nothing
        return {"rope_type": "yarn", "rope_theta": float(config.rope_theta), "factor": float(config.rope_factor),
                "original_max_position_embeddings": config.rope_original_max_len,
                "beta_fast": float(config.rope_beta_fast), "beta_slow": float(config.rope_beta_slow),
                "attention_factor": yarn_attention_factor(config.rope_factor, config.rope_attention_factor),
                "truncate": config.rope_truncate}
    return {"rope_type": "default", "rope_theta": float(config.rope_theta)}


def _yarn_scaling(hf_config, rope: dict) -> dict:
    """Our yarn settings of transformers' yarn rope_parameters, read as its `_compute_yarn_parameters` reads them:
    factor None -> max_position_embeddings / original_max_position_embeddings; beta_fast, beta_slow None or 0 -> 32,
    1; truncate absent -> true; no attention_factor -> get_mscale(factor, mscale) / get_mscale(factor,
    mscale_all_dim) when both are set (get_mscale(s, m) = 0.1 m ln(s) + 1, 1 for s <= 1), else 0.1 ln(factor) + 1.
    One line for what ours cannot compute (a partial rotation, an attention_factor <= 0)."""
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise KobaError(f"import: this model's yarn RoPE rotates part of each head (partial_rotary_factor "
                        f"{rope['partial_rotary_factor']}); only whole heads are supported")
    original = int(rope.get("original_max_position_embeddings") or hf_config.max_position_embeddings)
    factor = float(hf_config.max_position_embeddings / original if rope.get("factor") is None else rope["factor"])
    attention = rope.get("attention_factor")
    if attention is not None and not 0 < attention < float("inf"):
        raise KobaError(f"import: this model's yarn attention_factor is {attention!r}; only a finite one > 0 is "
                        "supported")
    mscale, all_dims = rope.get("mscale"), rope.get("mscale_all_dim")
    if attention is None and mscale and all_dims and factor > 1:  # DeepSeek's form, folded into one number
        attention = (0.1 * mscale * math.log(factor) + 1.0) / (0.1 * all_dims * math.log(factor) + 1.0)
    return {"rope_scaling": "yarn", "rope_factor": factor, "rope_original_max_len": original,
            "rope_beta_fast": float(rope.get("beta_fast") or 32.0),
            "rope_beta_slow": float(rope.get("beta_slow") or 1.0), "rope_attention_factor": float(attention or 0.0),
            "rope_truncate": bool(rope.get("truncate", True))}


def _floats(value):
    """A list of numbers as floats; anything else as it is, for TransformerConfig to refuse in one line."""
    numbers = isinstance(value, list) and all(isinstance(f, int | float) and not isinstance(f, bool) for f in value)
    return [float(f) for f in value] if numbers else value


def _longrope_scaling(hf_config, rope: dict) -> dict:
    """Our longrope settings of Phi-3's longrope rope_parameters, read as transformers'
    `_compute_longrope_parameters` reads them: original_max_position_embeddings (the config's own, which transformers
    copies there); factor None -> max_position_embeddings / original_max_position_embeddings; no attention_factor ->
    derived from factor (positions.longrope_attention_factor). One line for an attention_factor ours cannot take."""
    original = int(rope.get("original_max_position_embeddings")
                   or getattr(hf_config, "original_max_position_embeddings", None) or hf_config.max_position_embeddings)
    factor = rope.get("factor")
    attention = rope.get("attention_factor")
    if attention is not None and not 0 < attention < float("inf"):
        raise KobaError(f"import: this model's longrope attention_factor is {attention!r}; only a finite one > 0 is "
                        "supported")
    lists = {ours: _floats(rope.get(theirs)) for theirs, ours in (("short_factor", "rope_short_factor"),
                                                                  ("long_factor", "rope_long_factor"))}
    return {"rope_scaling": "longrope", "rope_original_max_len": original,
            "rope_factor": float(hf_config.max_position_embeddings / original if factor is None else factor),
            "rope_attention_factor": float(attention or 0.0), **lists}


def our_config(hf_config, tied: bool | None = None) -> TransformerConfig:
    """The TransformerConfig of a LlamaConfig, Qwen2Config, Qwen3Config, MistralConfig (a Llama whose attention may
    slide over a window: `attention_window`), GemmaConfig or Phi3Config, refused in one line where its options leave
    what ours compute. `tied`: whether the loaded model's head is its embedding table (default: the config's flag)."""
    model_type = hf_config.model_type
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    local_rope = None
    if model_type == "gemma3_text":  # one RoPE for the full-attention layers, one for the sliding ones
        rope, local_rope = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
    gemma = model_type in ("gemma", *LATER_GEMMAS)
    activation = "hidden_activation" if model_type in LATER_GEMMAS else "hidden_act"
    checks = {activation: "gelu_pytorch_tanh" if gemma else "silu"}  # (transformers ignores pretraining_tp)
    for key, value in checks.items():
        if getattr(hf_config, key, value) != value:
            raise KobaError(f"import: this Llama has {key} {getattr(hf_config, key)!r}; only {value!r} is supported")
    if getattr(hf_config, "use_bidirectional_attention", False):
        raise KobaError(f"import: this {model_type} attends in both directions; only causal LMs are supported")
    window, sliding_layers = _windows(hf_config)
    qk_norm = model_type in ("qwen3", "gemma3_text")
    if model_type == "qwen2":
        bias, qkv_bias = False, True  # Qwen2's attention: biases on q, k and v, none on o or the MLP
    elif qk_norm:
        if getattr(hf_config, "attention_bias", False):  # on q, k, v and o but not the MLP: not one of ours
            raise KobaError(f"import: this {model_type} has attention_bias true; only ones without biases are "
                            "supported")
        bias = qkv_bias = False
    else:
        bias = qkv_bias = bool(getattr(hf_config, "attention_bias", False))
        if bool(getattr(hf_config, "mlp_bias", False)) != bias:  # Llama's attention_bias covers o_proj too
            raise KobaError(f"import: this Llama has attention_bias {hf_config.attention_bias!r} but mlp_bias "
                            f"{hf_config.mlp_bias!r}; only both or neither are supported")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    fills = head_dim * hf_config.num_attention_heads == hf_config.hidden_size  # else Qwen3's, Mistral Nemo's heads
    later_gemma = _later_gemma_options(hf_config, head_dim, local_rope, rope, window) \
        if model_type in LATER_GEMMAS else {}
    phi3 = {}
    if model_type == "phi3":  # partial rotary, and a name for export to write it back under
        phi3 = {"hf_family": "phi3",
                "rotary_dim": rotated_components(head_dim, rope.pop("partial_rotary_factor", 1.0), "Phi-3")}
    vocab = hf_config.vocab_size
    return TransformerConfig(vocab_size=vocab, d_model=hf_config.hidden_size, n_layers=hf_config.num_hidden_layers,
                             n_heads=hf_config.num_attention_heads, n_kv_heads=hf_config.num_key_value_heads,
                             d_ff=hf_config.intermediate_size, max_len=hf_config.max_position_embeddings,
                             tie_embeddings=bool(hf_config.tie_word_embeddings if tied is None else tied),
                             pad_id=min(256, vocab - 1),
                             d_head=0 if fills else head_dim, bias=bias, qkv_bias=qkv_bias, qk_norm=qk_norm,
                             attention_window=int(window), sliding_layers=sliding_layers,
                             norm_eps=float(hf_config.rms_norm_eps), **rope_settings(hf_config, rope),
                             **{**(GEMMA_SHAPE if gemma else LLAMA_SHAPE), **later_gemma, **phi3})


def rope_settings(hf_config, rope: dict) -> dict:
    """Our rope_theta and rope_scaling fields of transformers' rope_parameters `rope` (default, llama3, linear, yarn,
    and longrope for Phi-3), refused in one line for the others ("dynamic"; "longrope" of another family, whose
    generate keeps stale keys in its cache: see `wants_phi3`)."""
    kind = rope.get("rope_type", "default")
    if kind not in ("default", "llama3", "linear", "yarn") and not (kind == "longrope"
                                                                    and hf_config.model_type == "phi3"):
        raise KobaError(f"import: this model's RoPE is {rope}; only the default, llama3, linear and yarn rope_types "
                        "are supported (and longrope on a Phi-3)")
    theta = {"rope_theta": float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))}
    if kind == "llama3":
        return {**theta, "rope_scaling": "llama3",
                **{ours: (int if ours == "rope_original_max_len" else float)(rope[theirs])
                   for theirs, ours in LLAMA3_KEYS.items()}}
    if kind == "linear":
        return {**theta, "rope_scaling": "linear", "rope_factor": float(rope["factor"])}
    if kind == "yarn":
        return {**theta, **_yarn_scaling(hf_config, rope)}
    if kind == "longrope":
        return {**theta, **_longrope_scaling(hf_config, rope)}
    return theta


LATER_GEMMAS = ("gemma2", "gemma3_text")  # transformers' model_types of Gemma 2 and of Gemma 3's text model


def _windows(hf_config) -> tuple[int, list[int] | None]:
    """Our attention_window and sliding_layers of a config's sliding_window: Mistral's and Phi-3's cover every layer
    (0 when it covers the whole context); Qwen2's, Qwen3's and Gemma 2's and 3's layer_types say which layers
    slide."""
    window = getattr(hf_config, "sliding_window", None)
    if hf_config.model_type in ("mistral", "phi3"):
        return (window if window is not None and window < hf_config.max_position_embeddings else 0), None
    types = list(getattr(hf_config, "layer_types", None) or [])
    if not window or hf_config.model_type not in ("qwen2", "qwen3", *LATER_GEMMAS):
        return 0, None
    unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
    if unknown or len(types) != hf_config.num_hidden_layers:
        raise KobaError(f"import: this {hf_config.model_type}'s layer_types {types} are not one of full_attention "
                        "or sliding_attention per layer")
    sliding = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
    return (int(window), None if len(sliding) == len(types) else sliding) if sliding else (0, None)


def _later_gemma_options(hf_config, head_dim: int, local_rope: dict | None, full_rope: dict, window: int) -> dict:
    """What Gemma 2 and 3 add to Gemma 1: sandwich norms, an attention scale of their own (query_pre_attn_scalar),
    soft-capped logits, and for Gemma 3 the sliding layers' own RoPE base."""
    scale = getattr(hf_config, "query_pre_attn_scalar", None) or head_dim
    if not (float(scale).is_integer() and scale > 0):
        raise KobaError(f"import: this {hf_config.model_type}'s query_pre_attn_scalar is {scale!r}; only a positive "
                        "whole number is supported")
    options = {"norm": "sandwich", "attn_scale_dim": 0 if int(scale) == head_dim else int(scale),
               "attn_softcap": float(getattr(hf_config, "attn_logit_softcapping", None) or 0.0),
               "logit_softcap": float(getattr(hf_config, "final_logit_softcapping", None) or 0.0)}
    if local_rope is not None and window and local_rope != full_rope:  # the same RoPE on every layer: no local base
        if local_rope.get("rope_type", "default") != "default":
            raise KobaError(f"import: this Gemma 3's sliding layers scale their RoPE ({local_rope}); only an unscaled "
                            "one is supported there")
        options["rope_local_theta"] = float(local_rope.get("rope_theta", 10000.0))
    return options


def shares_its_embeddings(hf) -> bool:
    """Is the loaded model's output head its input embedding table? transformers keeps the two apart when a file
    says tie_word_embeddings but holds a head of its own, so the flag alone can be wrong."""
    head, table = hf.get_output_embeddings(), hf.get_input_embeddings()
    return head is not None and head.weight.data_ptr() == table.weight.data_ptr()


def exact_embed_scale(hf):
    """`hf` with its embedding scale exact. transformers keeps Gemma 2's and 3's sqrt(d) as a buffer in the
    weights' dtype, so a bf16 file's model multiplies by 34.0 where sqrt(1152) = 33.94 even after .float(); ours,
    in fp32, uses sqrt(d), and so must the fp32 reference the logit check compares it with."""
    embed = hf.get_input_embeddings()
    if isinstance(getattr(embed, "embed_scale", None), torch.Tensor):
        embed.embed_scale.fill_(hf.config.hidden_size ** 0.5)
    return hf


def _norm_offset(config: TransformerConfig) -> float:
    """What transformers' norm weights lack of ours: Gemma's RMSNorm multiplies by 1 + w, a Llama's by w."""
    return 1.0 if is_gemma_shaped(config) else 0.0


MODEL_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "mistral": "MistralForCausalLM", "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                 "gemma3": "Gemma3ForCausalLM", "phi3": "Phi3ForCausalLM"}


def llama_names(state: dict, config: TransformerConfig) -> dict:
    """`state` with each layer's tensors under a Llama's names as well: Phi-3's fused qkv_proj and gate_up_proj as
    views of their row blocks (q, k, v; gate, up), so that writing a view writes the fused tensor. Others'
    unchanged."""
    if not wants_phi3(config):
        return state
    names = dict(state)
    split = [config.n_heads * config.head_dim] + [config.kv_heads * config.head_dim] * 2
    for i in range(config.n_layers):
        layer = f"model.layers.{i}."
        for fused, parts in (("self_attn.qkv_proj", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                             ("mlp.gate_up_proj", ("mlp.gate_proj", "mlp.up_proj"))):
            rows = state[f"{layer}{fused}.weight"]
            blocks = rows.split(split) if len(parts) == 3 else rows.chunk(2)
            names.update({f"{layer}{part}.weight": block for part, block in zip(parts, blocks, strict=True)})
    return names


def norm_names(config: TransformerConfig) -> dict[str, str]:
    """Each layer's norms, ours to transformers'. A Llama's post_attention_layernorm is the FFN's input norm;
    Gemma 2's and 3's (sandwich) normalises the attention's output and pre_feedforward_layernorm is the FFN's input
    norm."""
    if config.norm == "sandwich":
        return {"ln1": "input_layernorm", "attn_out_norm": "post_attention_layernorm",
                "ln2": "pre_feedforward_layernorm", "ffn_out_norm": "post_feedforward_layernorm"}
    return {"ln1": "input_layernorm", "ln2": "post_attention_layernorm"}


def _kinds(bias: bool) -> tuple[str, ...]:
    return ("weight", "bias") if bias else ("weight",)


@torch.no_grad()
def to_hf(model: TransformerLM):
    """A LlamaForCausalLM (or Qwen2, Qwen3, Mistral, Gemma or Phi3 ForCausalLM) computing the same logits as
    `model`."""
    import transformers

    config = model.config
    model_class = getattr(transformers, MODEL_CLASSES[architecture(config)])
    hf = model_class(llama_config(config))
    ours, theirs = model.state_dict(), llama_names(hf.state_dict(), config)
    order, d_head = rope_rows(config), config.head_dim
    gain = _norm_offset(config)
    theirs["model.embed_tokens.weight"].copy_(ours["embed.weight"])
    for i in range(config.n_layers):
        mine, hf_layer = f"blocks.{i}.", f"model.layers.{i}."
        for our_norm, their_norm in norm_names(config).items():
            theirs[f"{hf_layer}{their_norm}.weight"].copy_(ours[f"{mine}{our_norm}.weight"] - gain)
        for kind in _kinds(config.has_qkv_bias):
            for name, tensor in zip(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                                    qkv_to_hf(ours[f"{mine}attn.qkv.{kind}"], config), strict=True):
                theirs[f"{hf_layer}{name}.{kind}"].copy_(tensor)
        for norm in ("q_norm", "k_norm") if config.qk_norm else ():
            theirs[f"{hf_layer}self_attn.{norm}.weight"].copy_(_reorder_heads(ours[f"{mine}attn.{norm}.weight"],
                                                                               d_head, order) - gain)
        for kind in _kinds(config.bias):
            gate, up = ours[f"{mine}ffn.fc.{kind}"].chunk(2)
            for name, tensor in (("self_attn.o_proj", ours[f"{mine}attn.out.{kind}"]), ("mlp.gate_proj", gate),
                                 ("mlp.up_proj", up), ("mlp.down_proj", ours[f"{mine}ffn.proj.{kind}"])):
                theirs[f"{hf_layer}{name}.{kind}"].copy_(tensor)
    theirs["model.norm.weight"].copy_(ours["final_norm.weight"] - gain)
    theirs["lm_head.weight"].copy_(ours["head.weight"])  # the same tensor as embed.weight when tied
    return hf.eval()


@torch.no_grad()
def from_hf(hf) -> TransformerLM:
    """A TransformerLM computing the same logits as the LlamaForCausalLM (or Qwen2, Qwen3, Mistral, Gemma or Phi3
    ForCausalLM) `hf`."""
    model = TransformerLM(our_config(hf.config, tied=shares_its_embeddings(hf)))
    config = model.config
    theirs = llama_names({k: v.float() for k, v in hf.state_dict().items()}, config)
    back, gain = torch.argsort(rope_rows(config)), _norm_offset(config)
    state = {"embed.weight": theirs["model.embed_tokens.weight"],
             "final_norm.weight": theirs["model.norm.weight"] + gain,
             "head.weight": theirs.get("lm_head.weight", theirs["model.embed_tokens.weight"])}  # tied: one tensor
    for i in range(config.n_layers):
        mine, t = f"blocks.{i}.", f"model.layers.{i}."
        for our_norm, their_norm in norm_names(config).items():
            state[f"{mine}{our_norm}.weight"] = theirs[f"{t}{their_norm}.weight"] + gain
        for kind in _kinds(config.has_qkv_bias):
            state[f"{mine}attn.qkv.{kind}"] = qkv_from_hf(*(theirs[f"{t}self_attn.{x}_proj.{kind}"] for x in "qkv"),
                                                          config)
        for norm in ("q_norm", "k_norm") if config.qk_norm else ():
            state[f"{mine}attn.{norm}.weight"] = _reorder_heads(theirs[f"{t}self_attn.{norm}.weight"],
                                                                config.head_dim, back) + gain
        for kind in _kinds(config.bias):
            state[f"{mine}attn.out.{kind}"] = theirs[f"{t}self_attn.o_proj.{kind}"]
            state[f"{mine}ffn.fc.{kind}"] = torch.cat([theirs[f"{t}mlp.gate_proj.{kind}"],
                                                       theirs[f"{t}mlp.up_proj.{kind}"]])
            state[f"{mine}ffn.proj.{kind}"] = theirs[f"{t}mlp.down_proj.{kind}"]
    model.load_state_dict(state)
    return model.eval()
