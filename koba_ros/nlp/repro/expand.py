"""Model expansion (Yano et al. 2025, arXiv 2504.00623): train a small model, grow it (function-preserving, see
expansion.py) and train on with a smaller LR, against the large model trained from scratch for as many steps.
Compared: the training FLOPs (6 · parameters, embeddings included, · tokens) each run needs to reach `target_loss`,
a smoothed training loss both runs reach (the higher of their two lowest), not the from-scratch run's final loss:
at the quick size the grown model gets there with fewer FLOPs but ends above the from-scratch one (docs/nlp.md)."""
from __future__ import annotations

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand, lr_for_size
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import corpus_stream, eval_loss, fit, passes, save_plot, smooth, train_and_val_samplers

SIZES = {
    "test": dict(d_small=32, layers_small=2, d_large=64, layers_large=4, heads_small=2, seq=64, batch=16,
                 steps_small=150, steps_large=150, lr=3e-3, grown_lr_power=0.5, corpus="docstrings",
                 corpus_bytes=400_000),
    "full": dict(d_small=256, layers_small=4, d_large=512, layers_large=8, heads_small=4, seq=256, batch=32,
                 steps_small=600, steps_large=600, lr=1.5e-3, grown_lr_power=0.5, corpus="source",
                 corpus_bytes=12_000_000),
}  # passes over the training text by the scratch run: test 0.85; full 0.9 on the standard library's source (session
#    1's full size drew 9.8M tokens from 0.36M of docstrings, 27 passes: its scratch model overfit, eval 3.129)
SIZES["quick"] = SIZES["test"]  # --quick is the test size: what the CPU affords here (15-35 s of one core)


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    stream = corpus_stream(s["seq"], s["corpus_bytes"], s["corpus"])
    sample, sample_val = train_and_val_samplers(stream, s["batch"], seed)
    tokens_per_step = s["batch"] * s["seq"]

    small_cfg = TransformerConfig(d_model=s["d_small"], n_layers=s["layers_small"], n_heads=s["heads_small"],
                                  max_len=s["seq"], positions="rope")
    torch.manual_seed(seed)
    small = TransformerLM(small_cfg)
    small_run = fit(small, sample, s["steps_small"], s["lr"], device, warmup=s["steps_small"] // 10,
                    schedule="wso")
    before = eval_loss(small, sample_val, 4, device)
    grown = expand(small, s["d_large"] // s["d_small"], s["layers_large"], seed=seed)
    after = eval_loss(grown, sample_val, 4, device)
    # Yano et al.: a smaller peak LR for the larger member; grown_lr_power 0 keeps the small model's LR (the sweep
    # that compares them: bench/lm_repro_sweep.py expand --set grown_lr_power=0). The scratch run always uses 0.5.
    grown_lr = lr_for_size(s["lr"], s["d_small"], s["d_large"], power=s["grown_lr_power"])
    grown_run = fit(grown, lambda t: sample(s["steps_small"] + t), s["steps_large"], grown_lr, device,
                    warmup=s["steps_large"] // 20)

    torch.manual_seed(seed)
    large = TransformerLM(grown.config)
    scratch_steps = s["steps_small"] + s["steps_large"]
    scratch_run = fit(large, sample, scratch_steps, lr_for_size(s["lr"], s["d_small"], s["d_large"]), device,
                      warmup=scratch_steps // 10)

    f_small, f_large = 6 * small.num_parameters() * tokens_per_step, 6 * large.num_parameters() * tokens_per_step
    grown_flops = [f_small * s["steps_small"] + f_large * (i + 1) for i in range(len(grown_run["losses"]))]
    scratch_flops = [f_large * (i + 1) for i in range(len(scratch_run["losses"]))]
    grown_curve, scratch_curve = smooth(grown_run["losses"], 20), smooth(scratch_run["losses"], 20)
    target = max(min(grown_curve), min(scratch_curve))  # a loss both runs reach

    def flops_to(curve, flops):
        return next(f for loss, f in zip(curve, flops, strict=True) if loss <= target)

    to_target = {"grown": flops_to(grown_curve, grown_flops), "scratch": flops_to(scratch_curve, scratch_flops)}
    plot = save_plot(out / "expand.png", [
        {"title": "loss vs training FLOPs", "xlabel": "FLOPs", "series": {
            "small then grown": ([f_small * (i + 1) for i in range(s["steps_small"])] + grown_flops,
                                 smooth(small_run["losses"], 20) + grown_curve),
            "large from scratch": (scratch_flops, scratch_curve)}}], "model expansion")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "plot": plot,
            "loss_before_expansion": round(before, 6), "loss_after_expansion": round(after, 6),
            "expansion_loss_change": abs(after - before), "grown_lr": grown_lr,
            "parameters": {"small": small.num_parameters(), "large": large.num_parameters()},
            "passes_scratch": passes((s["steps_small"] + s["steps_large"]) * tokens_per_step, stream.split(0.1)[0]),
            "target_loss": round(target, 4), "flops_to_target": to_target,
            "flops_ratio_grown_over_scratch": round(to_target["grown"] / to_target["scratch"], 4),
            "final_eval_loss": {"grown": round(eval_loss(grown, sample_val, 4, device), 4),
                                "scratch": round(eval_loss(large, sample_val, 4, device), 4)}}
