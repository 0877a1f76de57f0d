"""What the reproductions share: a bare training loop that records losses and gradient norms, corpora, plots."""
from __future__ import annotations

import math

import torch

from koba_ros.nlp.data import TokenStream, batch_generator, builtin_corpus, stdlib_source
from koba_ros.nlp.evaluation import score
from koba_ros.nlp.schedules import lr_at
from koba_ros.nlp.tokenizer import ByteTokenizer

CORPORA = {"docstrings": builtin_corpus, "source": stdlib_source}  # English (1.5 MB) / Python code (about 12 MB)


def corpus_stream(seq_len: int, max_bytes: int = 400_000, corpus: str = "docstrings") -> TokenStream:
    return TokenStream.from_text(CORPORA[corpus](max_bytes), ByteTokenizer(), seq_len, f"built-in {corpus} corpus")


def passes(tokens_drawn: int, train: TokenStream) -> float:
    """How many times a run sees its training split on average; well above 1, a validation loss measures memorising."""
    return round(tokens_drawn / len(train), 3)


def train_and_val_samplers(stream: TokenStream, batch: int, seed: int):
    """sample(step) from the first 90 % of the stream, sample_val(i) from the held-out last 10 %; both deterministic
    in (seed, index), so every arm of a comparison sees the same batches."""
    train, held = stream.split(0.1)

    def sample(step):
        return train.batch(batch, batch_generator(seed, step, 0))

    def sample_val(i):
        return held.batch(batch, batch_generator(seed + 1, i, 0))

    return sample, sample_val


def fit(model, sample, steps: int, lr: float, device: str, schedule: str = "cosine", warmup: int = 0,
        min_lr: float = 0.0, clip: float = 1.0, weight_decay: float = 0.0, betas=(0.9, 0.98),
        optimizer=None, tracked=None) -> dict:
    """Train `model` on batches sample(step) -> (x, y); returns per-step losses and (pre-clip) gradient norms, and
    with `tracked` (a list of parameters) also the gradient norm of those alone ("tracked_grad_norms").
    A non-finite loss ends the run (recorded as diverged) instead of raising: failing is a result here."""
    model.to(device).train()
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    losses, grad_norms, tracked_norms, diverged = [], [], [], False
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, schedule, min_lr)
        x, y = sample(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda")):
            loss = model(x.to(device), y.to(device))[1]
        if not math.isfinite(loss.item()):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tracked is not None:
            tracked_norms.append(float(torch.sqrt(sum(p.grad.pow(2).sum() for p in tracked if p.grad is not None))))
        grad_norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip or float("inf")).item())
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "grad_norms": grad_norms, "tracked_grad_norms": tracked_norms, "diverged": diverged,
            "optimizer": opt}


@torch.no_grad()
def eval_loss(model, sample, batches: int, device: str) -> float:
    model.eval()
    total = sum(model(x.to(device), y.to(device))[1].item() for x, y in (sample(10_000 + i) for i in range(batches)))
    model.train()
    return total / batches


def split_loss(model, split: TokenStream) -> float:
    """Mean next-token loss over a whole held-out split, every target once (evaluation.score, windows of seq_len):
    no sampling noise, which a few random batches add at the size of the margins some repros measure (session 23)."""
    with torch.no_grad():
        total, count = score(model, torch.as_tensor(split.tokens), split.seq_len, split.seq_len, batch_size=16)
    model.train()
    return total / count


def tail_mean(values: list[float], n: int = 10) -> float:
    return float(sum(values[-n:]) / max(1, len(values[-n:]))) if values else float("nan")


def save_plot(path, panels: list[dict], title: str) -> str:
    """panels: [{"title", "xlabel", "ylabel", "series": {label: (xs, ys)}, "logy": bool}] -> small PNG; a panel with
    "bars": {label: value} instead of "series" is a bar chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), dpi=80, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, (xs, ys) in panel.get("series", {}).items():
            ax.plot(xs, ys, label=label, lw=1.2)
        if "bars" in panel:
            ax.bar(range(len(panel["bars"])), list(panel["bars"].values()), tick_label=list(panel["bars"]))
            ax.tick_params(axis="x", labelsize=6, labelrotation=20)
            ax.set_ylim(min(panel["bars"].values()) - 0.05, max(panel["bars"].values()) + 0.02)
        ax.set_title(panel.get("title", ""), fontsize=9)
        ax.set_xlabel(panel.get("xlabel", "step"), fontsize=8)
        ax.set_ylabel(panel.get("ylabel", "loss"), fontsize=8)
        if panel.get("logy"):
            ax.set_yscale("log")
        if panel.get("series"):
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def smooth(values: list[float], k: int = 5) -> list[float]:
    return [sum(values[max(0, i - k + 1): i + 1]) / len(values[max(0, i - k + 1): i + 1]) for i in range(len(values))]
