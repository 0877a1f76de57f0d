"""A model family by progressive expansion (Yano et al. 2025, arXiv 2504.00623, the headline claim): the members
S < M < L built by training S, growing it to M (width x2), training, growing M to L (depth x2) and training, cost
less in total than training each member from scratch, at about the same loss per member.

As in the paper, the progressive family's total training cost is set equal to training the largest member from
scratch (the steps after the last growth are chosen so); the independent family trains every member for the same
number of steps as that largest member. Each member gets the same peak LR in both families (lr_for_size of its width,
expansion.py). Growth is our function-preserving operator; the paper's own operator is not known (docs/nlp.md).
FLOPs are 6 · parameters · tokens."""
from __future__ import annotations

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand, lr_for_size
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import (
    corpus_stream,
    eval_loss,
    fit,
    passes,
    save_plot,
    tail_mean,
    train_and_val_samplers,
)

SIZES = {  # members (d_model, n_layers): S -> M doubles the width, M -> L doubles the depth
    "test": dict(members=[[32, 2], [64, 2], [64, 4]], heads_small=2, seq=64, batch=16, steps=300, lr=3e-3,
                 corpus="docstrings", corpus_bytes=400_000),
    "full": dict(members=[[256, 4], [512, 4], [512, 8]], heads_small=4, seq=256, batch=32, steps=1200, lr=1.5e-3,
                 corpus="source", corpus_bytes=12_000_000),
}  # passes over the training text per independent member: test 0.85; full 0.9 on the standard library's source
#    (session 4's H100 run drew the same 9.8M tokens from 0.36M of docstrings, 27 passes: L overfit, S < M < L)
SIZES["quick"] = SIZES["test"]  # --quick is the test size (a few minutes of one core)
NAMES = ("S", "M", "L")


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    stream = corpus_stream(s["seq"], s["corpus_bytes"], s["corpus"])
    sample, sample_val = train_and_val_samplers(stream, s["batch"], seed)
    tokens_per_step, train_split = s["batch"] * s["seq"], stream.split(0.1)[0]

    d_small = s["members"][0][0]
    configs = [TransformerConfig(d_model=d, n_layers=layers, n_heads=s["heads_small"] * d // d_small,
                                 max_len=s["seq"], positions="rope") for d, layers in s["members"]]
    lrs = [lr_for_size(s["lr"], d_small, c.d_model) for c in configs]

    independent = []
    for config, lr in zip(configs, lrs, strict=True):
        torch.manual_seed(seed)
        model = TransformerLM(config)
        run_ = fit(model, sample, s["steps"], lr, device, warmup=s["steps"] // 10)
        independent.append({"parameters": model.num_parameters(), "steps": s["steps"],
                            "train_loss": round(tail_mean(run_["losses"]), 4),
                            "eval_loss": round(eval_loss(model, sample_val, 4, device), 4)})

    # Progressive: S as above, M for half the steps, L for whatever keeps the total at L-from-scratch's cost.
    n = [m["parameters"] for m in independent]
    steps = [s["steps"], s["steps"] // 2]
    steps.append(max(1, (n[2] * s["steps"] - n[0] * steps[0] - n[1] * steps[1]) // n[2]))
    torch.manual_seed(seed)
    model, progressive, done = TransformerLM(configs[0]), [], 0
    for i, (config, lr) in enumerate(zip(configs, lrs, strict=True)):
        if i:
            model = expand(model, config.d_model // model.config.d_model, config.n_layers, seed=seed)
        run_ = fit(model, lambda t, done=done: sample(done + t), steps[i], lr, device, warmup=steps[i] // 10)
        done += steps[i]
        progressive.append({"parameters": model.num_parameters(), "steps": steps[i],
                            "train_loss": round(tail_mean(run_["losses"]), 4),
                            "eval_loss": round(eval_loss(model, sample_val, 4, device), 4)})

    def flops(members):
        return sum(6 * m["parameters"] * m["steps"] * tokens_per_step for m in members)

    plot = save_plot(out / "family.png", [
        {"title": "eval loss per member", "xlabel": "member (0=S, 1=M, 2=L)", "ylabel": "eval loss", "series": {
            "independent": (range(3), [m["eval_loss"] for m in independent]),
            "progressive": (range(3), [m["eval_loss"] for m in progressive])}}], "model family by expansion")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "plot": plot,
            "train_tokens": len(train_split),
            "passes_per_independent_member": passes(s["steps"] * tokens_per_step, train_split),
            "members": {name: {"independent": a, "progressive": b}
                        for name, a, b in zip(NAMES, independent, progressive, strict=True)},
            "flops": {"independent": flops(independent), "progressive": flops(progressive),
                      "largest_from_scratch": flops(independent[2:])},
            "flops_ratio_progressive_over_independent": round(flops(progressive) / flops(independent), 4),
            "loss_gap_progressive_minus_independent": {
                name: round(b["eval_loss"] - a["eval_loss"], 4)
                for name, a, b in zip(NAMES, independent, progressive, strict=True)}}
