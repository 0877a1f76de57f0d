"""Phi-shaped models (Microsoft's Phi-1, Phi-1.5 and Phi-2: Gunasekar et al. 2023, "Textbooks Are All You Need",
arXiv 2306.11644; Li et al. 2023, arXiv 2309.05463) to and from Hugging Face `PhiForCausalLM`, tensor for tensor
(used by `koba lm export` and `koba lm import` in hf_gpt2.py, which check the logits before writing anything).
Phi-3 is a Llama with fused tensors and goes through hf_llama.py.

A model is Phi-shaped when its layers put attention and FFN side by side on one shared LayerNorm
(`parallel_residual` and `parallel_shared_norm`: y = x + Attn(LN(x)) + FFN(LN(x)), GPT-J's layer), with biases
everywhere, the output head's too (`head_bias`), a GELU FFN (`gelu`, their "gelu_new", as Phi-2; or `gelu_erf`,
their "gelu"), RoPE on the first `rotary_dim` components of each head (their partial_rotary_factor: Phi-2 rotates 32
of 80), heads that fill the width (any number of key/value heads), a final LayerNorm, and optionally a LayerNorm on
each head's queries and keys (`qk_norm`, their qk_layernorm). Names (each bias goes with its weight):

    embed.weight                  model.embed_tokens.weight
    blocks.i.ln1                  model.layers.i.input_layernorm
    blocks.i.attn.qkv             model.layers.i.self_attn.q_proj, k_proj, v_proj   (our rows stack q, k, v)
    blocks.i.attn.out             model.layers.i.self_attn.dense
    blocks.i.attn.q_norm / k_norm model.layers.i.self_attn.q_layernorm / k_layernorm
    blocks.i.ffn.fc / proj        model.layers.i.mlp.fc1 / fc2
    final_norm                    model.final_layernorm
    head                          lm_head

RoPE pairs differ as for a Llama and GPT-NeoX (hf_llama.rope_rows): the rotated rows of each q and k head are
reordered [evens, odds], the others keep their order, and so are a head's LayerNorm gains and biases.
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.hf_neox import ACTIVATIONS, THEIR_ACTIVATIONS
from koba_ros.nlp.model import TransformerLM

PHI_SHAPE = {"norm": "pre", "norm_type": "layernorm", "positions": "rope", "embedding": "table", "embed_scale": False,
             "embed_norm": False, "bias": True, "parallel_residual": True, "parallel_shared_norm": True,
             "head_bias": True, "attention_window": 0, "attn_softcap": 0.0, "logit_softcap": 0.0, "attn_scale_dim": 0,
             "d_head": 0, "rope_local_theta": 0.0}


def is_phi_shaped(config: TransformerConfig) -> bool:
    return all(getattr(config, key) == value for key, value in PHI_SHAPE.items()) and config.ffn in ACTIVATIONS \
        and config.has_qkv_bias


def phi_config(config: TransformerConfig):
    """transformers' PhiConfig of a Phi-shaped model; one line for anything else."""
    if not is_phi_shaped(config):
        wrong = {k: getattr(config, k) for k, v in PHI_SHAPE.items() if getattr(config, k) != v}
        raise KobaError(f"export: a Phi needs {PHI_SHAPE}, a GELU FFN and q/k/v biases; this model has "
                        f"{wrong or {'ffn': config.ffn, 'qkv_bias': config.qkv_bias}}")
    from transformers import PhiConfig

    rope = {**hf_llama.rope_parameters(config, "Phi"), "partial_rotary_factor": config.rope_dim / config.head_dim}
    return PhiConfig(vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.ff_dim,
                     num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
                     num_key_value_heads=config.kv_heads, hidden_act=ACTIVATIONS[config.ffn],
                     max_position_embeddings=config.max_len, layer_norm_eps=config.norm_eps, rope_parameters=rope,
                     qk_layernorm=config.qk_norm, tie_word_embeddings=config.tie_embeddings,
                     resid_pdrop=config.dropout, embd_pdrop=config.dropout, attention_dropout=config.dropout,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None)


def our_config(hf_config, tied: bool | None = None) -> TransformerConfig:
    """The TransformerConfig of a PhiConfig, refused in one line where its options leave what ours compute.
    `tied`: whether the loaded model's head is its embedding table (default: the config's flag)."""
    if hf_config.hidden_act not in THEIR_ACTIVATIONS:
        raise KobaError(f"import: this Phi has hidden_act {hf_config.hidden_act!r}; only "
                        f"{', '.join(THEIR_ACTIVATIONS)} are supported")
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    head_dim = hf_config.hidden_size // hf_config.num_attention_heads
    if getattr(hf_config, "head_dim", head_dim) != head_dim:  # its q_layernorm is hidden_size / heads wide
        raise KobaError(f"import: this Phi's heads ({hf_config.head_dim}) do not fill its width; only heads of "
                        "hidden_size / num_attention_heads are supported")
    rotary = hf_llama.rotated_components(head_dim, rope.pop("partial_rotary_factor", 1.0), "Phi")
    return TransformerConfig(vocab_size=hf_config.vocab_size, d_model=hf_config.hidden_size,
                             n_layers=hf_config.num_hidden_layers, n_heads=hf_config.num_attention_heads,
                             n_kv_heads=hf_config.num_key_value_heads, d_ff=hf_config.intermediate_size,
                             max_len=hf_config.max_position_embeddings, ffn=THEIR_ACTIVATIONS[hf_config.hidden_act],
                             norm_eps=float(hf_config.layer_norm_eps), rotary_dim=rotary,
                             qk_norm=bool(hf_config.qk_layernorm), pad_id=min(256, hf_config.vocab_size - 1),
                             tie_embeddings=bool(hf_config.tie_word_embeddings if tied is None else tied),
                             **hf_llama.rope_settings(hf_config, rope), **PHI_SHAPE)


LAYER_NAMES = {"ln1": "input_layernorm", "attn.out": "self_attn.dense", "ffn.fc": "mlp.fc1", "ffn.proj": "mlp.fc2"}
QK_NORMS = {"attn.q_norm": "self_attn.q_layernorm", "attn.k_norm": "self_attn.k_layernorm"}
TOP_NAMES = {"embed.weight": "model.embed_tokens.weight", "final_norm.weight": "model.final_layernorm.weight",
             "final_norm.bias": "model.final_layernorm.bias", "head.weight": "lm_head.weight",
             "head.bias": "lm_head.bias"}


@torch.no_grad()
def to_hf(model: TransformerLM):
    """A PhiForCausalLM computing the same logits as `model`."""
    from transformers import PhiForCausalLM

    config = model.config
    hf = PhiForCausalLM(phi_config(config))
    ours, theirs = model.state_dict(), hf.state_dict()
    order = hf_llama.rope_rows(config)
    for mine, name in TOP_NAMES.items():
        theirs[name].copy_(ours[mine])  # the head's weight: the same tensor as the embedding's when tied
    for i in range(config.n_layers):
        mine, layer = f"blocks.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias"):
            for our_name, their_name in LAYER_NAMES.items():
                theirs[f"{layer}{their_name}.{kind}"].copy_(ours[f"{mine}{our_name}.{kind}"])
            for x, rows in zip("qkv", hf_llama.qkv_to_hf(ours[f"{mine}attn.qkv.{kind}"], config), strict=True):
                theirs[f"{layer}self_attn.{x}_proj.{kind}"].copy_(rows)
            for our_name, their_name in QK_NORMS.items() if config.qk_norm else ():
                gains = ours[f"{mine}{our_name}.{kind}"]
                theirs[f"{layer}{their_name}.{kind}"].copy_(hf_llama._reorder_heads(gains, config.head_dim, order))
    return hf.eval()


@torch.no_grad()
def from_hf(hf) -> TransformerLM:
    """A TransformerLM computing the same logits as the PhiForCausalLM `hf`."""
    model = TransformerLM(our_config(hf.config, tied=hf_llama.shares_its_embeddings(hf)))
    config, theirs = model.config, {k: v.float() for k, v in hf.state_dict().items()}
    back = torch.argsort(hf_llama.rope_rows(config))
    state = {mine: theirs[name] for mine, name in TOP_NAMES.items() if name in theirs}
    state.setdefault("head.weight", theirs["model.embed_tokens.weight"])  # tied: one tensor
    for i in range(config.n_layers):
        mine, layer = f"blocks.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias"):
            for our_name, their_name in LAYER_NAMES.items():
                state[f"{mine}{our_name}.{kind}"] = theirs[f"{layer}{their_name}.{kind}"]
            q, k, v = (theirs[f"{layer}self_attn.{x}_proj.{kind}"] for x in "qkv")
            state[f"{mine}attn.qkv.{kind}"] = hf_llama.qkv_from_hf(q, k, v, config)
            for our_name, their_name in QK_NORMS.items() if config.qk_norm else ():
                gains = theirs[f"{layer}{their_name}.{kind}"]
                state[f"{mine}{our_name}.{kind}"] = hf_llama._reorder_heads(gains, config.head_dim, back)
    model.load_state_dict(state)
    return model.eval()
