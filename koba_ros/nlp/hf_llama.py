"""Llama-shaped models to and from Hugging Face `LlamaForCausalLM` (and `Qwen2ForCausalLM`, `Qwen3ForCausalLM`,
`MistralForCausalLM`), tensor for tensor (used by `koba lm export` and `koba lm import` in hf_gpt2.py, which check
the logits before writing anything).

A model is Llama-shaped when it is Pre-LN with RMSNorm, a SwiGLU FFN, RoPE, a plain embedding table and no
Spike-No-More embedding fixes (any number of key/value heads). `bias: true` becomes transformers' `attention_bias` and
`mlp_bias` (biases on q, k, v, o and on gate, up, down; RMSNorm has none either way). Biases on q, k and v only
(`bias: false, qkv_bias: true`) are Qwen2's attention: such a model goes out and comes in as `Qwen2ForCausalLM`,
whose tensors have the same names. Normalised queries and keys without biases (`qk_norm: true`, usually with
`d_head` wider than d_model / n_heads) are Qwen3's attention, `Qwen3ForCausalLM`; sliding-window attention
without biases (`attention_window`) is Mistral's, `MistralForCausalLM`. Names (each bias goes with its weight):

    embed.weight                  model.embed_tokens.weight
    blocks.i.ln1 / ln2            model.layers.i.input_layernorm / post_attention_layernorm
    blocks.i.attn.qkv             model.layers.i.self_attn.q_proj, k_proj, v_proj   (our rows stack q, k, v)
    blocks.i.attn.out             model.layers.i.self_attn.o_proj
    blocks.i.attn.q_norm / k_norm model.layers.i.self_attn.q_norm / k_norm             (Qwen3)
    blocks.i.ffn.fc               model.layers.i.mlp.gate_proj, up_proj             (our rows stack W, V)
    blocks.i.ffn.proj             model.layers.i.mlp.down_proj
    final_norm                    model.norm
    head.weight                   lm_head.weight

RoPE pairs differ: ours rotates interleaved pairs (2j, 2j+1) of a head (positions.py, Su et al. eq. 34), Hugging
Face's "rotate_half" rotates (j, j + d/2), both at angle p·theta_j. Reordering each q and k head's rows to
[evens, odds] turns one into the other; a dot product of q and k is unchanged by reordering both alike, and v and
o_proj are untouched. A head's RMSNorm is unchanged by reordering its components too, if its gains are reordered
with them: q_norm and k_norm gains are reordered like one head's rows.
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM

LLAMA_SHAPE = {"norm": "pre", "norm_type": "rmsnorm", "ffn": "swiglu", "positions": "rope", "embedding": "table",
               "embed_scale": False, "embed_norm": False}


# Gemma (1): a Llama's layers with a GEGLU FFN and embeddings scaled by sqrt(d) (Spike No More's first fix, §4.1);
# its RMSNorm stores g - 1 (it computes x / RMS(x) * (1 + w)).
GEMMA_SHAPE = {**LLAMA_SHAPE, "ffn": "geglu", "embed_scale": True}


def is_gemma_shaped(config: TransformerConfig) -> bool:
    return all(getattr(config, key) == value for key, value in GEMMA_SHAPE.items())


def is_llama_shaped(config: TransformerConfig) -> bool:
    """Llama-shaped, or Gemma-shaped (a Llama with GEGLU and scaled embeddings): every tensor maps one to one."""
    return all(getattr(config, key) == value for key, value in LLAMA_SHAPE.items()) or is_gemma_shaped(config)


def _head_order(head_dim: int) -> torch.Tensor:
    """Hugging Face's row i of a q or k head is our row order[i]: the even components, then the odd ones."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _reorder_heads(rows: torch.Tensor, head_dim: int, order: torch.Tensor) -> torch.Tensor:
    """Reorders the rows of each head of a weight (rows x inputs) or a bias (rows)."""
    heads = rows.reshape(-1, head_dim, *rows.shape[1:])
    return heads[:, order].reshape(rows.shape)


def architecture(config: TransformerConfig) -> str:
    """"llama" (biases everywhere or nowhere), "qwen2" (on q, k and v only), "qwen3" (normalised queries and keys,
    no biases) or "mistral" (sliding-window attention, no biases); one line for anything else."""
    if not is_llama_shaped(config):
        wrong = {k: getattr(config, k) for k, v in LLAMA_SHAPE.items() if getattr(config, k) != v}
        raise KobaError(f"export: a Llama needs {LLAMA_SHAPE}; this model has {wrong}")
    if is_gemma_shaped(config):
        if config.bias or config.has_qkv_bias or config.qk_norm or config.attention_window:
            raise KobaError("export: a Gemma has no biases, no QK-norm and no sliding window; this model has one")
        return "gemma"
    if config.attention_window:
        if config.bias or config.has_qkv_bias or config.qk_norm:
            raise KobaError("export: sliding-window attention is Mistral's, which has no biases and no QK-norm; "
                            "this model has them")
        return "mistral"
    if config.qk_norm:
        if config.bias or config.has_qkv_bias:
            raise KobaError("export: normalised queries and keys are Qwen3's attention, which has no biases here; "
                            "this model has biases")
        return "qwen3"
    if config.has_qkv_bias == config.bias:
        return "llama"
    if not config.has_qkv_bias:
        raise KobaError("export: biases everywhere but on q, k and v are neither a Llama's nor a Qwen2's")
    if config.d_head and config.d_head * config.n_heads != config.d_model:
        raise KobaError(f"export: Qwen2's heads fill its width; this model's {config.n_heads} heads of {config.d_head} "
                        f"do not fill {config.d_model}")
    return "qwen2"


def llama_config(config: TransformerConfig):
    """transformers' LlamaConfig (or Qwen2Config, Qwen3Config, see `architecture`) of a Llama-shaped model."""
    common = dict(vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.ff_dim,
                  num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
                  num_key_value_heads=config.kv_heads, hidden_act="silu", max_position_embeddings=config.max_len,
                  rms_norm_eps=config.norm_eps, rope_parameters=rope_parameters(config),
                  tie_word_embeddings=config.tie_embeddings, attention_dropout=config.dropout, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None)
    if architecture(config) == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common, use_sliding_window=False)
    if architecture(config) == "gemma":
        from transformers import GemmaConfig

        return GemmaConfig(**{**common, "hidden_act": "gelu_pytorch_tanh"}, head_dim=config.head_dim,
                           attention_bias=False)
    if architecture(config) == "mistral":
        from transformers import MistralConfig

        return MistralConfig(**common, head_dim=config.head_dim, sliding_window=config.attention_window)
    if architecture(config) == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**common, head_dim=config.head_dim, attention_bias=False, use_sliding_window=False)
    from transformers import LlamaConfig

    return LlamaConfig(**common, head_dim=config.head_dim, attention_bias=config.bias, mlp_bias=config.bias)


LLAMA3_KEYS = {"factor": "rope_factor", "low_freq_factor": "rope_low_freq_factor",
               "high_freq_factor": "rope_high_freq_factor", "original_max_position_embeddings": "rope_original_max_len"}


def rope_parameters(config: TransformerConfig) -> dict:
    """transformers' rope_parameters of our RoPE: its base, and Llama 3's frequency scaling where it is used."""
    if config.rope_scaling == "llama3":
        return {"rope_type": "llama3", "rope_theta": float(config.rope_theta),
                **{theirs: getattr(config, ours) for theirs, ours in LLAMA3_KEYS.items()}}
    if config.rope_scaling == "linear":
        return {"rope_type": "linear", "rope_theta": float(config.rope_theta), "factor": float(config.rope_factor)}
    return {"rope_type": "default", "rope_theta": float(config.rope_theta)}


def our_config(hf_config, tied: bool | None = None) -> TransformerConfig:
    """The TransformerConfig of a LlamaConfig, Qwen2Config, Qwen3Config, MistralConfig (a Llama whose attention may
    slide over a window: `attention_window`) or GemmaConfig, refused in one line where its options leave what ours
    compute. `tied`: whether the loaded model's head is its embedding table (default: the config's flag)."""
    rope = getattr(hf_config, "rope_parameters", None) or {}
    gemma = hf_config.model_type == "gemma"
    checks = {"hidden_act": "gelu_pytorch_tanh" if gemma else "silu"}  # (transformers ignores pretraining_tp)
    for key, value in checks.items():
        if getattr(hf_config, key, value) != value:
            raise KobaError(f"import: this Llama has {key} {getattr(hf_config, key)!r}; only {value!r} is supported")
    window = getattr(hf_config, "sliding_window", None) if hf_config.model_type == "mistral" else None
    window = window if window is not None and window < hf_config.max_position_embeddings else 0  # 0: covers all
    qk_norm = hf_config.model_type == "qwen3"
    sliding = "sliding_attention" in (getattr(hf_config, "layer_types", None) or [])  # Qwen's: some layers only
    if hf_config.model_type in ("qwen2", "qwen3") and sliding:
        raise KobaError(f"import: this {hf_config.model_type} slides its attention on some layers; only one window "
                        "for all layers (Mistral's) is supported")
    if hf_config.model_type == "qwen2":
        bias, qkv_bias = False, True  # Qwen2's attention: biases on q, k and v, none on o or the MLP
    elif qk_norm:
        if getattr(hf_config, "attention_bias", False):  # on q, k, v and o but not the MLP: not one of ours
            raise KobaError("import: this Qwen3 has attention_bias true; only Qwen3s without biases are supported")
        bias = qkv_bias = False
    else:
        bias = qkv_bias = bool(getattr(hf_config, "attention_bias", False))
        if bool(getattr(hf_config, "mlp_bias", False)) != bias:  # Llama's attention_bias covers o_proj too
            raise KobaError(f"import: this Llama has attention_bias {hf_config.attention_bias!r} but mlp_bias "
                            f"{hf_config.mlp_bias!r}; only both or neither are supported")
    kind = rope.get("rope_type", "default")
    if kind not in ("default", "llama3", "linear"):  # "dynamic", "yarn", "longrope"...
        raise KobaError(f"import: this Llama's RoPE is {rope}; only the default, llama3 and linear rope_types are "
                        "supported")
    theta = float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))
    scaling = {"rope_scaling": "llama3", **{ours: (int if ours == "rope_original_max_len" else float)(rope[theirs])
                                            for theirs, ours in LLAMA3_KEYS.items()}} if kind == "llama3" else {}
    if kind == "linear":
        scaling = {"rope_scaling": "linear", "rope_factor": float(rope["factor"])}
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    fills = head_dim * hf_config.num_attention_heads == hf_config.hidden_size  # else Qwen3's, Mistral Nemo's heads
    vocab = hf_config.vocab_size
    return TransformerConfig(vocab_size=vocab, d_model=hf_config.hidden_size, n_layers=hf_config.num_hidden_layers,
                             n_heads=hf_config.num_attention_heads, n_kv_heads=hf_config.num_key_value_heads,
                             d_ff=hf_config.intermediate_size, max_len=hf_config.max_position_embeddings,
                             tie_embeddings=bool(hf_config.tie_word_embeddings if tied is None else tied),
                             pad_id=min(256, vocab - 1),
                             d_head=0 if fills else head_dim, bias=bias, qkv_bias=qkv_bias, qk_norm=qk_norm,
                             attention_window=int(window),
                             rope_theta=theta, norm_eps=float(hf_config.rms_norm_eps), **scaling,
                             **(GEMMA_SHAPE if gemma else LLAMA_SHAPE))


def shares_its_embeddings(hf) -> bool:
    """Is the loaded model's output head its input embedding table? transformers keeps the two apart when a file
    says tie_word_embeddings but holds a head of its own, so the flag alone can be wrong."""
    head, table = hf.get_output_embeddings(), hf.get_input_embeddings()
    return head is not None and head.weight.data_ptr() == table.weight.data_ptr()


def _norm_offset(config: TransformerConfig) -> float:
    """What transformers' norm weights lack of ours: Gemma's RMSNorm multiplies by 1 + w, a Llama's by w."""
    return 1.0 if is_gemma_shaped(config) else 0.0


def _kinds(bias: bool) -> tuple[str, ...]:
    return ("weight", "bias") if bias else ("weight",)


@torch.no_grad()
def to_hf(model: TransformerLM):
    """A LlamaForCausalLM (or Qwen2, Qwen3, Mistral or Gemma ForCausalLM) computing the same logits as `model`."""
    from transformers import GemmaForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

    config = model.config
    model_class = {"qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM, "mistral": MistralForCausalLM,
                   "gemma": GemmaForCausalLM}.get(architecture(config), LlamaForCausalLM)
    hf = model_class(llama_config(config))
    ours, theirs = model.state_dict(), hf.state_dict()
    order, d_head = _head_order(config.head_dim), config.head_dim
    gain = _norm_offset(config)
    theirs["model.embed_tokens.weight"].copy_(ours["embed.weight"])
    split = [config.n_heads * d_head] + [config.kv_heads * d_head] * 2
    for i in range(config.n_layers):
        mine, hf_layer = f"blocks.{i}.", f"model.layers.{i}."
        theirs[hf_layer + "input_layernorm.weight"].copy_(ours[mine + "ln1.weight"] - gain)
        theirs[hf_layer + "post_attention_layernorm.weight"].copy_(ours[mine + "ln2.weight"] - gain)
        for kind in _kinds(config.has_qkv_bias):
            q, k, v = ours[f"{mine}attn.qkv.{kind}"].split(split)
            for name, tensor in (("self_attn.q_proj", _reorder_heads(q, d_head, order)),
                                 ("self_attn.k_proj", _reorder_heads(k, d_head, order)), ("self_attn.v_proj", v)):
                theirs[f"{hf_layer}{name}.{kind}"].copy_(tensor)
        for norm in ("q_norm", "k_norm") if config.qk_norm else ():
            theirs[f"{hf_layer}self_attn.{norm}.weight"].copy_(_reorder_heads(ours[f"{mine}attn.{norm}.weight"],
                                                                               d_head, order))
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
    """A TransformerLM computing the same logits as the LlamaForCausalLM (or Qwen2ForCausalLM, Qwen3ForCausalLM)
    `hf`."""
    model = TransformerLM(our_config(hf.config, tied=shares_its_embeddings(hf)))
    config, theirs = model.config, {k: v.float() for k, v in hf.state_dict().items()}
    back, gain = torch.argsort(_head_order(config.head_dim)), _norm_offset(config)
    state = {"embed.weight": theirs["model.embed_tokens.weight"],
             "final_norm.weight": theirs["model.norm.weight"] + gain,
             "head.weight": theirs.get("lm_head.weight", theirs["model.embed_tokens.weight"])}  # tied: one tensor
    for i in range(config.n_layers):
        mine, t = f"blocks.{i}.", f"model.layers.{i}."
        state[mine + "ln1.weight"] = theirs[t + "input_layernorm.weight"] + gain
        state[mine + "ln2.weight"] = theirs[t + "post_attention_layernorm.weight"] + gain
        for kind in _kinds(config.has_qkv_bias):
            state[f"{mine}attn.qkv.{kind}"] = torch.cat([
                _reorder_heads(theirs[f"{t}self_attn.q_proj.{kind}"], config.head_dim, back),
                _reorder_heads(theirs[f"{t}self_attn.k_proj.{kind}"], config.head_dim, back),
                theirs[f"{t}self_attn.v_proj.{kind}"]])
        for norm in ("q_norm", "k_norm") if config.qk_norm else ():
            state[f"{mine}attn.{norm}.weight"] = _reorder_heads(theirs[f"{t}self_attn.{norm}.weight"],
                                                                config.head_dim, back)
        for kind in _kinds(config.bias):
            state[f"{mine}attn.out.{kind}"] = theirs[f"{t}self_attn.o_proj.{kind}"]
            state[f"{mine}ffn.fc.{kind}"] = torch.cat([theirs[f"{t}mlp.gate_proj.{kind}"],
                                                       theirs[f"{t}mlp.up_proj.{kind}"]])
            state[f"{mine}ffn.proj.{kind}"] = theirs[f"{t}mlp.down_proj.{kind}"]
    model.load_state_dict(state)
    return model.eval()
