"""Warmup-Stable-Only (Yano et al. 2025, arXiv 2603.16127): pre-train with cosine, linear, WSD and WSO, then
fine-tune each on a different distribution (3 seeds). Decaying schedules win pre-training loss; WSO, which never
decays into a sharp minimum, wins after fine-tuning. That is the paper's claim; at the quick size neither half is
robust between WSD and WSO (docs/nlp.md "Session 23"). Fine-tuning is scored on held-out code that pre-training never
read (unseen_lines)."""
from __future__ import annotations

import statistics

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import TokenStream, batch_generator, stdlib_source
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import corpus_stream, fit, passes, save_plot, split_loss
from koba_ros.nlp.schedules import SCHEDULES
from koba_ros.nlp.tokenizer import ByteTokenizer

SIZES = {  # corpus_bytes: docstrings to pre-train on (all: 1.5 MB); ft_corpus_bytes: Python source to fine-tune on
    "test": dict(d_model=64, n_layers=2, n_heads=4, seq=64, batch=16, steps=120, ft_steps=40, lr=3e-3,
                 ft_lr=1e-3, seeds=1, corpus_bytes=400_000, ft_corpus_bytes=300_000),
    "full": dict(d_model=256, n_layers=4, n_heads=4, seq=256, batch=16, steps=500, ft_steps=150, lr=2e-3,
                 ft_lr=5e-4, seeds=3, corpus_bytes=2_000_000, ft_corpus_bytes=1_000_000),
}  # passes over pre-training / fine-tuning text: test 0.34 / 0.16; full 1.5 / 0.7 (session 1's full size, batch 32
#    on 0.4 MB of docstrings and 0.3 MB of code: 11 / 5 passes)
SIZES["quick"] = {**SIZES["test"], "seeds": 3}  # --quick is the test size (minutes of one CPU core), with 3 seeds


def unseen_lines(held_out: TokenStream, seen: TokenStream, shortest: int = 21) -> TokenStream:
    """`held_out` without the lines (stripped, `shortest` characters or more) that also appear in `seen`. The source
    code's docstrings are the pre-training corpus: a quarter of the code's held-out lines (486 of 1,833 at the test
    size, mostly doctests) had been read in pre-training, and on them alone WSO fine-tuned ahead of WSD (session 23)."""
    decode = ByteTokenizer().decode
    seen_lines = {line.strip() for line in decode(seen.tokens.tolist()).splitlines() if len(line.strip()) >= shortest}
    kept = [line for line in decode(held_out.tokens.tolist()).splitlines() if line.strip() not in seen_lines]
    return TokenStream.from_text("\n".join(kept), ByteTokenizer(), held_out.seq_len, "unseen code")


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    pre_corpus = corpus_stream(s["seq"], s["corpus_bytes"])
    pre_train, pre_val = pre_corpus.split(0.1)
    code = stdlib_source(s["ft_corpus_bytes"])  # a different distribution: code, not English
    ft_train, ft_val = TokenStream.from_text(code, ByteTokenizer(), s["seq"], "code").split(0.2)
    ft_val = unseen_lines(ft_val, pre_corpus)
    pre, post = {k: [] for k in SCHEDULES}, {k: [] for k in SCHEDULES}
    for r in range(s["seeds"]):
        for schedule in SCHEDULES:
            torch.manual_seed(seed + r)
            model = TransformerLM(TransformerConfig(d_model=s["d_model"], n_layers=s["n_layers"],
                                                    n_heads=s["n_heads"], max_len=s["seq"]))
            fit(model, lambda t, r=r: pre_train.batch(s["batch"], batch_generator(seed + r, t, 0)), s["steps"],
                s["lr"], device, schedule=schedule, warmup=s["steps"] // 10, min_lr=s["lr"] / 10, weight_decay=0.1)
            pre[schedule].append(split_loss(model, pre_val))
            # Fine-tuning is the same for every schedule: fresh AdamW, short warmup, linear decay.
            fit(model, lambda t, r=r: ft_train.batch(s["batch"], batch_generator(seed + r + 50, t, 0)),
                s["ft_steps"], s["ft_lr"], device, schedule="linear", warmup=s["ft_steps"] // 10, weight_decay=0.1)
            post[schedule].append(split_loss(model, ft_val))
    results = {k: {"pretrain_val_loss": round(statistics.mean(pre[k]), 4),
                   "finetune_val_loss": round(statistics.mean(post[k]), 4),
                   "pretrain_per_seed": [round(v, 4) for v in pre[k]],
                   "finetune_per_seed": [round(v, 4) for v in post[k]]} for k in SCHEDULES}
    plot = save_plot(out / "wso.png", [
        {"title": "after pre-training (docstrings)", "xlabel": "schedule index", "ylabel": "val loss",
         "series": {"pre-train": (range(4), [results[k]["pretrain_val_loss"] for k in SCHEDULES])}},
        {"title": "after fine-tuning (code)", "xlabel": "schedule index", "ylabel": "val loss",
         "series": {"fine-tune": (range(4), [results[k]["finetune_val_loss"] for k in SCHEDULES])}},
    ], "schedules: " + ", ".join(f"{i}={k}" for i, k in enumerate(SCHEDULES)))
    tokens = s["batch"] * s["seq"]
    return {"size": size or ("quick" if quick else "full"), "settings": s, "results": results, "plot": plot,
            "passes": {"pretrain": passes(s["steps"] * tokens, pre_train),
                       "finetune": passes(s["ft_steps"] * tokens, ft_train)},
            "best_pretrain": min(SCHEDULES, key=lambda k: results[k]["pretrain_val_loss"]),
            "best_finetune": min(SCHEDULES, key=lambda k: results[k]["finetune_val_loss"])}
