"""`koba lm expand`: grow a trained checkpoint into a wider and deeper one that computes the same function.

The growth is expansion.py's function-preserving operator (Yano et al. 2025 build a model family this way: train a
small model, expand it, train on). This file is the command around it:

* Always, the two models' logits on hf_gpt2's random-id probe batch must agree within 1e-4 of the largest |logit|
  (at least 1e-4; as export and import check theirs), else nothing is written.
* With `--data`, the source and the grown model score the same text (evaluation.score, disjoint windows of the run's
  seq_len, the first `eval_tokens` tokens). If the losses differ by more than 1e-4 nothing is written: a model that
  does not compute the source's function would silently throw away the training it came from.
* The grown checkpoint records the source's training config with the grown model, so `koba lm sample`, `koba lm
  eval` and `init_from` read it like any run, and the source's tokenizer digest and turn-over record
  (warm_start.derived_record), so `koba lm influence` refuses it and its fine-tunes for a turn-over source's masks.
  It has no optimizer state: training on starts a fresh AdamW.
* It suggests the smaller peak LR for the larger member, lr · (d / d')^0.5 (expansion.lr_for_size), which a run
  that trains on with `init_from` sets with `--set lr=...`.
"""
from __future__ import annotations

import math
from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import save_checkpoint
from koba_ros.nlp.evaluation import score, text_tokens
from koba_ros.nlp.expansion import expand, lr_for_size
from koba_ros.nlp.hf_gpt2 import check_same_logits
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.warm_start import derived_record

TOLERANCE = 1e-4  # the bound on the loss change an expansion may cause


def expand_checkpoint(checkpoint: str | Path, out: str | Path, width_factor: int = 1, n_layers: int = 0,
                      data: str = "", eval_tokens: int = 65536, noise: float = 0.01, seed: int = 0) -> dict:
    out = Path(out)
    if (out / "model.safetensors").exists() or (out / "checkpoint").exists():
        raise KobaError(f"expand: {out} already holds a checkpoint; give a new folder")
    if eval_tokens < 2:
        raise KobaError(f"expand: eval_tokens must be >= 2, got {eval_tokens}")
    source = load_trained(checkpoint)
    old = source.model.config
    if width_factor == 1 and n_layers in (0, old.n_layers):
        raise KobaError(f"expand: nothing to grow; give --width-factor > 1 and/or --layers above the source's "
                        f"{old.n_layers}")
    grown = expand(source.model, width_factor, n_layers or old.n_layers, noise, seed).eval()
    new = grown.config
    check = None
    if data:
        tokens = text_tokens(data, source)[0][:eval_tokens]
        seq_len = int(source.config.get("seq_len") or old.max_len)
        eos = source.document_eos  # scored as trained
        before, count = score(source.model, tokens, seq_len, seq_len, eos_id=eos, eos_starts=source.eos_starts)
        after, _ = score(grown, tokens, seq_len, seq_len, eos_id=eos, eos_starts=source.eos_starts)
        check = {"data": data, "scored_tokens": count, "loss_before": before / count, "loss_after": after / count}
        check["loss_change"] = abs(check["loss_after"] - check["loss_before"])
        if not check["loss_change"] <= TOLERANCE:  # `not <=`: a NaN loss fails too
            raise KobaError(f"expand: the grown model's loss is {check['loss_after']:.6f} against the source's "
                            f"{check['loss_before']:.6f} (change above {TOLERANCE}); nothing written")
    difference = check_same_logits(source.model, grown, "expand")  # always, --data or not: --noise 10 does not cancel
    source_lr = float(source.config.get("lr", 0.0)) or None
    suggested_lr = lr_for_size(source_lr, old.d_model, new.d_model) if source_lr else None
    expansion = {"source": str(source.path), "width_factor": width_factor, "n_layers": new.n_layers,
                 "noise": noise, "seed": seed, "source_lr": source_lr, "suggested_lr": suggested_lr, "check": check,
                 "max_logit_difference": difference}
    # the source's tokenizer digest and turn-over record carried over, as a fine-tune of it records them
    config = {**source.config, "model": new.to_dict(), "init_from": ""}
    save_checkpoint(out, grown.state_dict(), None, {"step": 0, "config": config, "expansion": expansion,
                                                    **derived_record(checkpoint)})
    return {"out": str(out), "source": str(source.path), "parameters_before": source.model.num_parameters(),
            "parameters_after": grown.num_parameters(), "d_model": [old.d_model, new.d_model],
            "n_layers": [old.n_layers, new.n_layers], "source_lr": source_lr, "suggested_lr": suggested_lr,
            "max_logit_difference": difference,
            **({k: round(v, 8) if isinstance(v, float) and math.isfinite(v) else v for k, v in check.items()}
               if check else {})}
