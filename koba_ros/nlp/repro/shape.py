"""SHAPE (Kiyono et al., EMNLP 2021): train on copy sequences of length <= 20, test on lengths 21-40.

Learned absolute positions never saw the test positions and fail; SHAPE's random shift during training makes the
model shift-invariant, so it extrapolates. Shift invariance is measured directly: cosine similarity of the final
hidden states of the same sequence at offsets 0 and 37 (SHAPE vs plain sinusoidal).

Which inference offset: training sees absolute positions 0 .. K-1+39 (offset k < K plus the 40 input tokens of
the longest training sequence); a test input of 2*40 tokens at the fixed offset K occupies K .. K+79, so its second
half (the copied part, where accuracy is measured) sits on positions never seen in training, and only a perfectly
shift-invariant model gets it right. At offset 0 (with K > 40) every test position was seen in training. Both are
reported: `accuracy_len_21_40` at the model's own inference offset (K), `accuracy_len_21_40_offset0` at offset 0.
Measured at the test size: offset 0 extrapolates almost perfectly (0.996 on lengths 21-40), offset K does not (0.365),
learned positions 0.472 (docs/nlp.md)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.repro.common import fit, save_plot, smooth

SIZES = {
    "test": dict(d_model=64, n_layers=2, n_heads=2, batch=32, steps=1500, lr=3e-3, vocab=64, max_shift=50),
    "full": dict(d_model=128, n_layers=3, n_heads=4, batch=64, steps=2500, lr=2e-3, vocab=64, max_shift=50),
}
SIZES["quick"] = SIZES["test"]  # --quick is the test size (about 2 min of one core); K=50 > 40 so that offset 0
#                                  keeps every test position inside the trained range
SEP, PAD = 0, 1  # symbols 2.. are the alphabet


def copy_batch(batch: int, lo: int, hi: int, vocab: int, g: torch.Generator):
    """'a b c SEP a b c' with distinct symbols (so the source position of each copied token is unambiguous);
    loss only on the copied half (targets -100 elsewhere)."""
    length = int(torch.randint(lo, hi + 1, (1,), generator=g))
    src = torch.rand(batch, vocab, generator=g).argsort(dim=1)[:, :length] + 2
    seq = torch.cat([src, torch.full((batch, 1), SEP), src], dim=1)
    x, y = seq[:, :-1], seq[:, 1:].clone()
    y[:, :length] = -100
    return x, y


@torch.no_grad()
def accuracy(model, lo: int, hi: int, vocab: int, device, seed: int, batches: int = 8, shift=None) -> float:
    """Token accuracy on the copied half; shift: an explicit position offset (None: the model's inference default)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct = total = 0
    for _ in range(batches):
        x, y = copy_batch(64, lo, hi, vocab, g)
        pred = model(x.to(device), shift=shift)[0].argmax(-1).cpu()
        keep = y != -100
        correct += int((pred[keep] == y[keep]).sum())
        total += int(keep.sum())
    model.train()
    return correct / total


@torch.no_grad()
def shift_similarity(model, vocab: int, device, shift_a: int, shift_b: int) -> float:
    g = torch.Generator().manual_seed(123)
    x, _ = copy_batch(32, 10, 20, vocab, g)
    model.eval()
    a = model.hidden(x.to(device), shift=shift_a)
    b = model.hidden(x.to(device), shift=shift_b)
    model.train()
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    max_len, shift = 2 * 40 + 1, s["max_shift"]
    results, curves = {}, {}
    for positions in ("learned", "sinusoidal", "shape"):
        torch.manual_seed(seed)
        config = TransformerConfig(vocab_size=s["vocab"] + 2, d_model=s["d_model"], n_layers=s["n_layers"],
                                   n_heads=s["n_heads"], max_len=max_len, positions=positions,
                                   pad_id=PAD, init="xavier", embed_scale=True,
                                   **({"shape_max_shift": shift} if positions == "shape" else {}))  # SHAPE's only
        model = TransformerLM(config)
        g = torch.Generator().manual_seed(seed)
        run_ = fit(model, lambda step, g=g: copy_batch(s["batch"], 1, 20, s["vocab"], g), s["steps"], s["lr"],
                   device, warmup=s["steps"] // 10)
        curves[positions] = smooth(run_["losses"], 10)
        results[positions] = {
            "accuracy_len_1_20": round(accuracy(model, 1, 20, s["vocab"], device, seed + 7), 4),
            "accuracy_len_21_40": round(accuracy(model, 21, 40, s["vocab"], device, seed + 7), 4)}
        if positions == "shape":
            results[positions]["accuracy_len_1_20_offset0"] = round(
                accuracy(model, 1, 20, s["vocab"], device, seed + 7, shift=0), 4)
            results[positions]["accuracy_len_21_40_offset0"] = round(
                accuracy(model, 21, 40, s["vocab"], device, seed + 7, shift=0), 4)
        if positions != "learned":
            results[positions]["shift_cosine"] = round(shift_similarity(model, s["vocab"], device, 0, 37), 4)
    accuracies = {k: ([0, 1], [v["accuracy_len_1_20"], v["accuracy_len_21_40"]]) for k, v in results.items()}
    accuracies["shape, offset 0"] = ([0, 1], [results["shape"]["accuracy_len_1_20_offset0"],
                                              results["shape"]["accuracy_len_21_40_offset0"]])
    plot = save_plot(out / "shape.png", [
        {"title": "copy task, train lengths 1-20", "series": {k: (range(len(v)), v) for k, v in curves.items()}},
        {"title": "token accuracy (0: lengths 1-20, 1: 21-40)", "xlabel": "test lengths", "ylabel": "accuracy",
         "series": accuracies},
    ], "SHAPE vs absolute positions")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "results": results, "plot": plot,
            "shape_positions_seen_in_training": [0, shift - 1 + 2 * 20 - 1],
            "shape_test_positions_at_offset_K": [shift, shift + 2 * 40 - 1]}
