"""Spike No More (Takase et al. 2023, arXiv 2312.16903): with the plain small initialisation (tiny embeddings) a
Pre-LN LM at a high learning rate shows loss spikes (sudden gradient-norm growth); scaling embeddings by sqrt(d) or
a LayerNorm on the embeddings restores the large shortcut, which in the paper removes them. Not at the sizes here:
the quick run counts 8 / 5 / 7 spikes (small init / scaled / embedding LayerNorm), and the CPU sweeps' counts are
batch noise; what does reproduce is the gradient-norm side (the small init's is larger at initialisation and grows
with depth) and the fixes' lower final loss (docs/nlp.md).

The paper's bound on a Pre-LN layer's Jacobian grows as 1/std(x) of the shortcut x, and x starts as the embedded
input, so `shortcut_std` (std of the first block's input) is reported at the start and the end of training. Spikes
need a learning rate high enough for the sub-layer weights to grow during the run: at lr 1e-2 and a few hundred
steps (last session's sizes) the only large gradient norm is the one at initialisation and no loss spikes appear
(docs/nlp.md). Each lr in `lrs` trains all three variants; `max_grad_norm_late` ignores the first sixth of the steps
(warmup and the initial transient, where the init alone sets the gradient norm). `*_blocks` are the same over
the transformer blocks' parameters alone: the paper bounds the sub-layers' gradients, while the total is dominated
late in training by the embedding gradient, which scaled embeddings multiply by sqrt(d)."""
from __future__ import annotations

import statistics

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import batch_generator
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import corpus_stream, fit, save_plot, tail_mean

SIZES = {
    "test": dict(d_model=128, n_layers=4, n_heads=4, seq=64, batch=8, steps=300, lrs=[3e-2], beta2=0.95),
    "full": dict(d_model=512, n_layers=8, n_heads=8, seq=256, batch=16, steps=1000, lrs=[1e-2, 3e-2], beta2=0.95),
}
# beta2: Adam's second-moment decay. 0.95 (the LLM custom) forgets a gradient's scale in about 20 steps; a sweep's
# beta2=0.999 remembers about 1000, so a sudden gradient growth meets a stale denominator (docs/nlp.md, session 11).
SIZES["quick"] = SIZES["test"]  # --quick is the test size: what the CPU affords here (about a minute of one core)
VARIANTS = {"small_init": {}, "scaled_embed": {"embed_scale": True}, "embed_layernorm": {"embed_norm": True}}


def count_spikes(losses: list[float], window: int = 10, jump: float = 0.3) -> int:
    """Steps whose loss exceeds the median of the previous `window` steps by more than `jump` nats."""
    return sum(1 for t in range(window, len(losses)) if losses[t] - statistics.median(losses[t - window:t]) > jump)


class ShortcutStd:
    """Records the std of the first block's input (embeddings + positions, after the fixes) on each forward."""

    def __init__(self, model):
        self.values: list[float] = []
        model.blocks[0].register_forward_pre_hook(self.record)

    def record(self, _module, args):
        self.values.append(float(args[0].detach().std()))


def build(s: dict, variant: str, n_layers: int | None = None) -> TransformerLM:
    return TransformerLM(TransformerConfig(d_model=s["d_model"], n_layers=n_layers or s["n_layers"],
                                           n_heads=s["n_heads"], max_len=s["seq"], norm="pre", init="small",
                                           **VARIANTS[variant]))


def init_grad_norms(s: dict, x, y, device, seed: int) -> dict:
    """Total gradient norm at initialisation for each variant at 1x and 3x the depth: the paper's bound grows with
    depth when the shortcut is small, so the small init's norm should grow with depth and the fixes' much less."""
    norms = {}
    for layers in (s["n_layers"], 3 * s["n_layers"]):
        for name in VARIANTS:
            torch.manual_seed(seed)
            model = build(s, name, layers).to(device)
            model(x.to(device), y.to(device))[1].backward()
            total = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())).item()
            norms.setdefault(f"layers={layers}", {})[name] = round(total, 3)
    return norms


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    train = corpus_stream(s["seq"])

    def sample(step):
        return train.batch(s["batch"], batch_generator(seed, step, 0))

    results, panels, norms = {}, [], {}
    for lr in s["lrs"]:
        key, losses = f"lr={lr:g}", {}
        results[key] = {}
        for name in VARIANTS:
            torch.manual_seed(seed)
            model = build(s, name)
            shortcut = ShortcutStd(model)
            run_ = fit(model, sample, s["steps"], lr, device, warmup=s["steps"] // 20, clip=0.0,
                       betas=(0.9, s["beta2"]), tracked=list(model.blocks.parameters()))
            grads = run_["grad_norms"] or [float("nan")]
            blocks = run_["tracked_grad_norms"] or [float("nan")]
            losses[name], norms[f"{name} {key}"] = run_["losses"], grads
            results[key][name] = {
                "spikes": count_spikes(run_["losses"]), "diverged": run_["diverged"],
                "final_train_loss": round(tail_mean(run_["losses"]), 4),
                "max_grad_norm": round(max(grads), 3), "max_grad_norm_step": grads.index(max(grads)),
                "max_grad_norm_late": round(max(grads[len(grads) // 6:] or [float("nan")]), 3),
                "max_grad_norm_blocks": round(max(blocks), 3),
                "max_grad_norm_blocks_late": round(max(blocks[len(blocks) // 6:] or [float("nan")]), 3),
                "shortcut_std_start": round(shortcut.values[0], 4),
                "shortcut_std_end": round(shortcut.values[-1], 4)}
        panels.append({"title": f"Pre-LN, {s['n_layers']} layers, d={s['d_model']}, lr {lr:g}",
                       "series": {k: (range(len(v)), v) for k, v in losses.items()}})
    panels.append({"title": "gradient norm", "ylabel": "||grad||", "logy": True,
                   "series": {k: (range(len(v)), v) for k, v in norms.items()}})
    plot = save_plot(out / "spike.png", panels, "Spike No More")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "results": results, "plot": plot,
            "init_grad_norm_by_depth": init_grad_norms(s, *sample(0), device, seed),
            "grad_norms": {k: [round(g, 3) for g in v] for k, v in norms.items()}}
