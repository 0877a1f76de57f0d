"""Spike No More (Takase et al. 2023, arXiv 2312.16903): with the plain small initialisation (tiny embeddings) a
Pre-LN LM at a high learning rate shows loss spikes (sudden gradient-norm growth); scaling embeddings by sqrt(d) or
a LayerNorm on the embeddings restores the large shortcut and removes most of them."""
from __future__ import annotations

import statistics

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import batch_generator
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import corpus_stream, fit, save_plot, tail_mean

SIZES = {
    "test": dict(d_model=128, n_layers=4, n_heads=4, seq=64, batch=8, steps=150, lr=1e-2),
    "full": dict(d_model=512, n_layers=6, n_heads=8, seq=256, batch=16, steps=600, lr=1e-2),
}
SIZES["quick"] = SIZES["test"]  # --quick is the test size: what the CPU affords here (15-35 s of one core)


def count_spikes(losses: list[float], window: int = 10, jump: float = 0.3) -> int:
    """Steps whose loss exceeds the median of the previous `window` steps by more than `jump` nats."""
    return sum(1 for t in range(window, len(losses)) if losses[t] - statistics.median(losses[t - window:t]) > jump)


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    train = corpus_stream(s["seq"])

    def sample(step):
        return train.batch(s["batch"], batch_generator(seed, step, 0))

    variants = {"small_init": {}, "scaled_embed": {"embed_scale": True}, "embed_layernorm": {"embed_norm": True}}
    results, losses, norms = {}, {}, {}
    for name, extra in variants.items():
        torch.manual_seed(seed)
        config = TransformerConfig(d_model=s["d_model"], n_layers=s["n_layers"], n_heads=s["n_heads"],
                                   max_len=s["seq"], norm="pre", init="small", **extra)
        run_ = fit(TransformerLM(config), sample, s["steps"], s["lr"], device, warmup=s["steps"] // 20,
                   clip=0.0, betas=(0.9, 0.95))
        losses[name], norms[name] = run_["losses"], run_["grad_norms"]
        results[name] = {"spikes": count_spikes(run_["losses"]), "diverged": run_["diverged"],
                         "final_train_loss": round(tail_mean(run_["losses"]), 4),
                         "max_grad_norm": round(max(run_["grad_norms"] or [float("nan")]), 3)}
    plot = save_plot(out / "spike.png", [
        {"title": f"Pre-LN, small init, lr {s['lr']}", "series": {k: (range(len(v)), v) for k, v in losses.items()}},
        {"title": "gradient norm", "ylabel": "||grad||", "logy": True,
         "series": {k: (range(len(v)), v) for k, v in norms.items()}},
    ], "Spike No More")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "results": results, "plot": plot,
            "grad_norms": {k: [round(g, 3) for g in v] for k, v in norms.items()}}
