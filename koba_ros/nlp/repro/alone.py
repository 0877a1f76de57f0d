"""ALONE (Takase & Kobayashi, NeurIPS 2020): word embeddings from one shared vector, fixed word filters and a small
FFN. On a word-level language (each word has a few fixed successors) ALONE reaches about the loss of a full table
with far fewer embedding parameters, and beats a (factorised) table given the same parameter count.

ALONE learns its embeddings through a two-layer FFN, so it needs more steps than a table to catch up: at the test
size (7.9x fewer embedding parameters) eval loss table / ALONE was 1.805 / 2.804 after 300 steps and 1.440 / 1.488
after 1000 (seed 0, docs/nlp.md), hence 1000 steps."""
from __future__ import annotations

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.embeddings import embedding_parameters
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import eval_loss, fit, save_plot, smooth, tail_mean

SIZES = {
    "test": dict(vocab=1024, d_model=64, n_layers=1, n_heads=2, alone_hidden=64, seq=16, batch=32, steps=1000,
                 lr=3e-3),
    "full": dict(vocab=16384, d_model=256, n_layers=2, n_heads=4, alone_hidden=512, seq=64, batch=64, steps=1200,
                 lr=1e-3),
}
SIZES["quick"] = SIZES["test"]  # --quick is the test size: what the CPU affords here (about 90 s wall, 3 variants)
SUCCESSORS = 4


def markov_language(vocab: int, seed: int) -> torch.Tensor:
    """Each word's SUCCESSORS possible next words; the best possible loss is ln(SUCCESSORS)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (vocab, SUCCESSORS), generator=g)


def sampler(table: torch.Tensor, batch: int, seq: int, seed: int):
    def sample(step):
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        words = [torch.randint(0, table.shape[0], (batch,), generator=g)]
        for _ in range(seq):
            choice = torch.randint(0, SUCCESSORS, (batch,), generator=g)
            words.append(table[words[-1], choice])
        seq_ = torch.stack(words, dim=1)
        return seq_[:, :-1], seq_[:, 1:]
    return sample


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    language = markov_language(s["vocab"], seed)
    sample = sampler(language, s["batch"], s["seq"], seed)
    base = dict(vocab_size=s["vocab"], d_model=s["d_model"], n_layers=s["n_layers"], n_heads=s["n_heads"],
                max_len=s["seq"], pad_id=0, alone_dim=s["d_model"], alone_hidden=s["alone_hidden"])
    alone_params = embedding_parameters(TransformerLM(TransformerConfig(embedding="alone", **base)).embed)
    rank = max(1, round(alone_params / (s["vocab"] + s["d_model"])))  # factorised table with ALONE's budget
    variants = {"table": dict(embedding="table"), "alone": dict(embedding="alone"),
                f"table_rank{rank}": dict(embedding="factorized", embed_rank=rank)}
    results, curves = {}, {}
    for name, extra in variants.items():
        torch.manual_seed(seed)
        model = TransformerLM(TransformerConfig(**base, **extra))
        run_ = fit(model, sample, s["steps"], s["lr"], device, warmup=s["steps"] // 10)
        curves[name] = smooth(run_["losses"], 10)
        results[name] = {"embedding_parameters": embedding_parameters(model.embed),
                         "final_train_loss": round(tail_mean(run_["losses"]), 4),
                         "eval_loss": round(eval_loss(model, sample, 4, device), 4)}
    plot = save_plot(out / "alone.png", [
        {"title": f"word-level LM, V={s['vocab']}", "series": {k: (range(len(v)), v) for k, v in curves.items()}}],
        "ALONE vs embedding tables")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "results": results,
            "best_possible_loss": round(float(torch.log(torch.tensor(float(SUCCESSORS)))), 4), "plot": plot}
