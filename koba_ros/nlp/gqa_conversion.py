"""Turn a multi-head attention model into a grouped-query one (Ainslie et al. 2023, "GQA: Training Generalized
Multi-Query Transformer Models from Multi-Head Checkpoints", §2.1 "Uptraining").

The paper converts a trained multi-head checkpoint in two steps: the key and value projection matrices of each
group of n_heads / n_kv_heads heads are mean-pooled into one head ("mean pooling ... works best", §2.1 and §3.3), and
the converted model is then trained on for a small fraction alpha of the original pre-training steps (5 % in the
paper), which recovers most of the multi-head quality at the decoding cost of fewer key/value heads.

`pool_kv_heads(model, n_kv_heads)` is step one (`koba lm gqa` on a checkpoint); step two is `koba lm train` with
`init_from` on the result.
"""
from __future__ import annotations

from pathlib import Path

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import Transformer


@torch.no_grad()
def pool_kv_heads(model: Transformer, n_kv_heads: int) -> Transformer:
    """A copy of `model` with n_kv_heads key/value heads, each the mean of its group's heads; queries, the output
    projection and every other tensor unchanged."""
    old = model.config
    if n_kv_heads < 1 or old.kv_heads % n_kv_heads:
        raise KobaError(f"gqa: {n_kv_heads} key/value heads must be >= 1 and divide the model's {old.kv_heads}")
    config = TransformerConfig.from_dict({**old.to_dict(), "n_kv_heads": n_kv_heads})
    group, d_head = old.kv_heads // n_kv_heads, old.head_dim
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
            q, k, v = tensor.split([old.n_heads * d_head] + [old.kv_heads * d_head] * 2)
            pool = lambda t: t.reshape(n_kv_heads, group, d_head, *t.shape[1:]).mean(1).reshape(-1, *t.shape[1:])  # noqa: E731
            tensor = torch.cat([q, pool(k), pool(v)])
        state[name] = tensor.clone()
    converted = type(model)(config)
    converted.load_state_dict(state)
    return converted.to(next(model.parameters()).device)


def convert_checkpoint(checkpoint: str | Path, out: str | Path, n_kv_heads: int, data: str = "",
                       eval_tokens: int = 65536) -> dict:
    """`koba lm gqa`: a trained run's checkpoint pooled to n_kv_heads key/value heads, written as a checkpoint that
    `init_from` reads for the uptraining (its recorded config is the source's with the new model, and it carries the
    source's tokenizer digest and turn-over record: warm_start.derived_record). With `data`, the source and the
    converted model score the same text, so the loss that uptraining has to win back is known."""
    from koba_ros.nlp.checkpoint import save_checkpoint
    from koba_ros.nlp.evaluation import score, text_tokens
    from koba_ros.nlp.trained import load_trained
    from koba_ros.nlp.warm_start import derived_record

    out = Path(out)
    if (out / "model.safetensors").exists() or (out / "checkpoint").exists():
        raise KobaError(f"gqa: {out} already holds a checkpoint; give a new folder")
    if eval_tokens < 2:
        raise KobaError(f"gqa: eval_tokens must be >= 2, got {eval_tokens}")
    source = load_trained(checkpoint)
    converted = pool_kv_heads(source.model, n_kv_heads).eval()
    result = {"out": str(out), "source": str(source.path), "kv_heads": [source.model.config.kv_heads, n_kv_heads],
              "parameters_before": source.model.num_parameters(), "parameters_after": converted.num_parameters()}
    if data:
        tokens = text_tokens(data, source)[0][:eval_tokens]
        seq_len = int(source.config.get("seq_len") or source.model.config.max_len)
        eos = source.document_eos  # scored as it was trained
        before, count = score(source.model, tokens, seq_len, seq_len, eos_id=eos, eos_starts=source.eos_starts)
        after, _ = score(converted, tokens, seq_len, seq_len, eos_id=eos, eos_starts=source.eos_starts)
        result.update(data=data, scored_tokens=count, loss_before=round(before / count, 6),
                      loss_after=round(after / count, 6))
    # the source's tokenizer digest and turn-over record carried over, as a fine-tune of it records them
    config = {**source.config, "model": converted.config.to_dict(), "init_from": ""}
    save_checkpoint(out, converted.state_dict(), None, {"step": 0, "config": config,
                                                        "gqa_conversion": {k: v for k, v in result.items()
                                                                           if k != "out"},
                                                        **derived_record(checkpoint)})
    return result
