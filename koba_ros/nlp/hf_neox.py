"""GPT-NeoX-shaped models (EleutherAI's GPT-NeoX-20B and the Pythia suite, Biderman et al. 2023) to and from Hugging
Face `GPTNeoXForCausalLM`, tensor for tensor (used by `koba lm export` and `koba lm import` in hf_gpt2.py, which check
the logits before writing anything).

A model is GPT-NeoX-shaped when it is Pre-LN with LayerNorm, a GELU FFN (`gelu_erf`, transformers' "gelu", as
Pythia; or GELU's tanh form, `gelu`, their "gelu_new"), biases everywhere, RoPE on the first `rotary_dim` components
of each head (Black et al. 2022, "GPT-NeoX-20B", §2.1.1: a quarter), heads that fill the width and as many key/value
heads as query heads; its layers may put attention and FFN side by side (`parallel_residual`, their
use_parallel_residual: GPT-NeoX-20B §2.1.2 and Pythia). Names (each bias goes with its weight):

    embed.weight                  gpt_neox.embed_in.weight
    blocks.i.ln1 / ln2            gpt_neox.layers.i.input_layernorm / post_attention_layernorm
    blocks.i.attn.qkv             gpt_neox.layers.i.attention.query_key_value   (ours: [all q; all k; all v],
                                                                                 theirs: [q_h; k_h; v_h] per head)
    blocks.i.attn.out             gpt_neox.layers.i.attention.dense
    blocks.i.ffn.fc / proj        gpt_neox.layers.i.mlp.dense_h_to_4h / dense_4h_to_h
    final_norm                    gpt_neox.final_layer_norm
    head.weight                   lm_head.weight (embed_out.weight in older files; transformers renames it)

RoPE pairs differ as for a Llama (hf_llama.py): theirs rotate (j, j + r/2) of the first r components, ours the
interleaved pairs of the same r, so those rows of each q and k head are reordered [evens, odds]; the other
components carry no position and keep their order.
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.hf_llama import _reorder_heads, rope_parameters, rope_rows, rope_settings, rotated_components
from koba_ros.nlp.model import TransformerLM

NEOX_SHAPE = {"norm": "pre", "norm_type": "layernorm", "positions": "rope", "embedding": "table", "embed_scale": False,
              "embed_norm": False, "bias": True, "qk_norm": False, "attention_window": 0, "attn_softcap": 0.0,
              "logit_softcap": 0.0, "attn_scale_dim": 0, "d_head": 0, "parallel_shared_norm": False,
              "head_bias": False}
ACTIVATIONS = {"gelu_erf": "gelu", "gelu": "gelu_new"}  # our ffn: transformers' hidden_act
THEIR_ACTIVATIONS = {"gelu": "gelu_erf", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def is_neox_shaped(config: TransformerConfig) -> bool:
    return all(getattr(config, key) == value for key, value in NEOX_SHAPE.items()) and config.ffn in ACTIVATIONS \
        and config.has_qkv_bias and config.kv_heads == config.n_heads


def neox_config(config: TransformerConfig):
    """transformers' GPTNeoXConfig of a GPT-NeoX-shaped model; one line for anything else."""
    if not is_neox_shaped(config):
        wrong = {k: getattr(config, k) for k, v in NEOX_SHAPE.items() if getattr(config, k) != v}
        raise KobaError(f"export: a GPT-NeoX needs {NEOX_SHAPE}, a GELU FFN, q/k/v biases and one key/value head per "
                        f"query head; this model has {wrong or {'ffn': config.ffn, 'n_kv_heads': config.n_kv_heads}}")
    from transformers import GPTNeoXConfig

    rope = {**rope_parameters(config, "GPT-NeoX"), "partial_rotary_factor": config.rope_dim / config.head_dim}
    return GPTNeoXConfig(vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
                         num_attention_heads=config.n_heads, intermediate_size=config.ff_dim,
                         hidden_act=ACTIVATIONS[config.ffn], max_position_embeddings=config.max_len,
                         layer_norm_eps=config.norm_eps, use_parallel_residual=config.parallel_residual,
                         rope_parameters=rope, attention_bias=True, tie_word_embeddings=config.tie_embeddings,
                         attention_dropout=config.dropout, hidden_dropout=config.dropout, bos_token_id=None,
                         eos_token_id=None, pad_token_id=None)


def our_config(hf_config, tied: bool | None = None) -> TransformerConfig:
    """The TransformerConfig of a GPTNeoXConfig, refused in one line where its options leave what ours compute.
    `tied`: whether the loaded model's head is its embedding table (default: the config's flag)."""
    if hf_config.hidden_act not in THEIR_ACTIVATIONS:
        raise KobaError(f"import: this GPT-NeoX has hidden_act {hf_config.hidden_act!r}; only "
                        f"{', '.join(THEIR_ACTIVATIONS)} are supported")
    if not getattr(hf_config, "attention_bias", True):  # the MLP always has biases; our `bias` is one switch
        raise KobaError("import: this GPT-NeoX has attention_bias false; only GPT-NeoXs with biases everywhere are "
                        "supported")
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    head_dim = hf_config.hidden_size // hf_config.num_attention_heads
    rotary = rotated_components(head_dim, rope.pop("partial_rotary_factor", 1.0), "GPT-NeoX")
    return TransformerConfig(vocab_size=hf_config.vocab_size, d_model=hf_config.hidden_size,
                             n_layers=hf_config.num_hidden_layers, n_heads=hf_config.num_attention_heads,
                             d_ff=hf_config.intermediate_size, max_len=hf_config.max_position_embeddings,
                             ffn=THEIR_ACTIVATIONS[hf_config.hidden_act], norm_eps=float(hf_config.layer_norm_eps),
                             parallel_residual=bool(hf_config.use_parallel_residual),
                             rotary_dim=rotary,
                             tie_embeddings=bool(hf_config.tie_word_embeddings if tied is None else tied),
                             pad_id=min(256, hf_config.vocab_size - 1), **rope_settings(hf_config, rope),
                             **NEOX_SHAPE)


LAYER_NAMES = {"ln1": "input_layernorm", "ln2": "post_attention_layernorm", "attn.out": "attention.dense",
               "ffn.fc": "mlp.dense_h_to_4h", "ffn.proj": "mlp.dense_4h_to_h"}


@torch.no_grad()
def to_hf(model: TransformerLM):
    """A GPTNeoXForCausalLM computing the same logits as `model`."""
    from transformers import GPTNeoXForCausalLM

    config = model.config
    hf = GPTNeoXForCausalLM(neox_config(config))
    ours, theirs = model.state_dict(), hf.state_dict()
    order, H, d = rope_rows(config), config.n_heads, config.head_dim
    theirs["gpt_neox.embed_in.weight"].copy_(ours["embed.weight"])
    for i in range(config.n_layers):
        mine, layer = f"blocks.{i}.", f"gpt_neox.layers.{i}."
        for kind in ("weight", "bias"):
            for our_name, their_name in LAYER_NAMES.items():
                theirs[f"{layer}{their_name}.{kind}"].copy_(ours[f"{mine}{our_name}.{kind}"])
            q, k, v = ours[f"{mine}attn.qkv.{kind}"].chunk(3)
            q, k = _reorder_heads(q, d, order), _reorder_heads(k, d, order)
            per_head = torch.stack([t.reshape(H, d, *t.shape[1:]) for t in (q, k, v)], dim=1)  # [H, 3, d, ...]
            theirs[f"{layer}attention.query_key_value.{kind}"].copy_(per_head.reshape(3 * H * d, *q.shape[1:]))
    for kind in ("weight", "bias"):
        theirs[f"gpt_neox.final_layer_norm.{kind}"].copy_(ours[f"final_norm.{kind}"])
    theirs["lm_head.weight"].copy_(ours["head.weight"])
    return hf.eval()


@torch.no_grad()
def from_hf(hf) -> TransformerLM:
    """A TransformerLM computing the same logits as the GPTNeoXForCausalLM `hf`."""
    from koba_ros.nlp.hf_llama import shares_its_embeddings

    model = TransformerLM(our_config(hf.config, tied=shares_its_embeddings(hf)))
    config, theirs = model.config, {k: v.float() for k, v in hf.state_dict().items()}
    back, H, d = torch.argsort(rope_rows(config)), config.n_heads, config.head_dim
    state = {"embed.weight": theirs["gpt_neox.embed_in.weight"],
             "head.weight": theirs.get("lm_head.weight", theirs["gpt_neox.embed_in.weight"])}
    for kind in ("weight", "bias"):
        state[f"final_norm.{kind}"] = theirs[f"gpt_neox.final_layer_norm.{kind}"]
    for i in range(config.n_layers):
        mine, layer = f"blocks.{i}.", f"gpt_neox.layers.{i}."
        for kind in ("weight", "bias"):
            for our_name, their_name in LAYER_NAMES.items():
                state[f"{mine}{our_name}.{kind}"] = theirs[f"{layer}{their_name}.{kind}"]
            fused = theirs[f"{layer}attention.query_key_value.{kind}"]
            per_head = fused.reshape(H, 3, d, *fused.shape[1:])
            q, k, v = (per_head[:, j].reshape(H * d, *fused.shape[1:]) for j in range(3))
            state[f"{mine}attn.qkv.{kind}"] = torch.cat([_reorder_heads(q, d, back), _reorder_heads(k, d, back), v])
    model.load_state_dict(state)
    return model.eval()
