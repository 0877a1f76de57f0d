"""PHSIC (Yokoi et al. 2018): a co-occurrence score for sentence pairs, fitted in closed form, about as good as a
trained neural PMI estimator at a small fraction of the fitting time.

Pairs from the robot's world: x is a spoken instruction naming an object ("put the duckie in the top left box"), y is
another of that object's names ("the toy that quacks"). Every object's names are split in half: training pairs use
one half on both sides, test pairs the other, so every test sentence and every test name is new (PMI by counting is
impossible). Each held-out true pair is scored against the same x with a name of another object; the measure is the
ROC AUC of true over false pairs. Sentences are all-MiniLM-L6-v2 mean-pooled, L2-normalised vectors (a cosine
kernel for PHSIC). Compared, on the same vectors:

- PHSIC: means and cross-covariance of the training pairs, no training loop;
- neural PMI: a bilinear score phi(x)^T W psi(y) + b trained with the logistic loss to tell training pairs from
  pairs with a shuffled y (negative sampling, whose optimum is the PMI), Adam, `epochs` passes;
- cosine similarity of x and y (no fitting): a baseline that needs x and y to look alike.

Fitting times are measured in this process, one after the other (the ratio is what to read).
"""
from __future__ import annotations

import itertools
import random
import time

import torch
from torch.nn import functional as F

from koba_ros.nlp.phsic import PointwiseHSIC
from koba_ros.nlp.repro.common import save_plot

SIZES = {
    "test": dict(sentences_per_pair=2, epochs=100, seeds=1),
    "full": dict(sentences_per_pair=4, epochs=100, seeds=3),
}
SIZES["quick"] = SIZES["test"]


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(score of a random true pair > score of a random false pair), ties counted half (Mann-Whitney)."""
    greater = (positive[:, None] > negative[None, :]).double().mean()
    ties = (positive[:, None] == negative[None, :]).double().mean()
    return float(greater + 0.5 * ties)


def sentence_vectors(texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence vectors (mean of token states, L2-normalised), as the model is meant to be used."""
    from koba_ros.grounding.text_encoders import MiniLMEncoder

    states, mask = MiniLMEncoder()(texts)
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return F.normalize(pooled, dim=-1)


def name_pairs(seed: int, per_pair: int):
    """(train, test) lists of (instruction, other name of the same object, object), and test negatives."""
    from koba_ros.sim.catalog import load_catalog
    from koba_ros.speech.domain_lm import PICK_TEMPLATES, SPOKEN_BOXES, names_of

    rng = random.Random(seed)
    catalog = list(load_catalog().values())
    owners: dict[str, set[int]] = {}
    for k, entry in enumerate(catalog):
        for name in names_of(entry):
            owners.setdefault(name, set()).add(k)
    halves = []
    for k, entry in enumerate(catalog):
        names = sorted(n for n in names_of(entry) if owners[n] == {k})
        rng.shuffle(names)
        halves.append((names[: len(names) // 2], names[len(names) // 2:]))
    combos = list(itertools.product(PICK_TEMPLATES, SPOKEN_BOXES))

    def pairs(side: int):
        out = []
        for k, half in enumerate(halves):
            for a, b in itertools.permutations(half[side], 2):
                out += [(t.format(o=a, b=box), b, k) for t, box in rng.sample(combos, per_pair)]
        return out

    train, test = pairs(0), pairs(1)
    others = [(n, k) for k, half in enumerate(halves) for n in half[1]]
    negatives = [(x, rng.choice([n for n, j in others if j != k]), k) for x, _, k in test]
    return train, test, negatives


def neural_pmi(phi: torch.Tensor, psi: torch.Tensor, epochs: int, seed: int):
    """Bilinear logistic scorer, true pairs against the same x with a shuffled y; full-batch Adam."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    weight = torch.zeros(phi.shape[1], psi.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(epochs):
        shuffled = psi[torch.randperm(len(psi), generator=g)]
        pos = ((phi @ weight) * psi).sum(-1) + bias
        neg = ((phi @ weight) * shuffled).sum(-1) + bias
        loss = F.softplus(-pos).mean() + F.softplus(neg).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda a, b: (((a @ weight) * b).sum(-1) + bias).detach()


def one_seed(s: dict, seed: int) -> dict:
    train, test, negatives = name_pairs(seed, s["sentences_per_pair"])
    texts = sorted({t for rows in (train, test, negatives) for x, y, _ in rows for t in (x, y)})
    index = {t: i for i, t in enumerate(texts)}
    vectors = sentence_vectors(texts)

    def features(rows):
        return vectors[[index[x] for x, _, _ in rows]], vectors[[index[y] for _, y, _ in rows]]

    phi, psi = features(train)
    t0 = time.perf_counter()
    phsic = PointwiseHSIC(phi, psi)
    phsic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pmi = neural_pmi(phi, psi, s["epochs"], seed)
    pmi_s = time.perf_counter() - t0
    scorers = {"phsic": phsic, "neural_pmi": pmi, "cosine": lambda a, b: (a * b).sum(-1)}
    pos, neg = features(test), features(negatives)
    return {"train_pairs": len(train), "test_pairs": len(test), "sentences": len(texts),
            "auc": {name: round(roc_auc(f(*pos).float(), f(*neg).float()), 4) for name, f in scorers.items()},
            "fit_seconds": {"phsic": round(phsic_s, 5), "neural_pmi": round(pmi_s, 4)},
            "neural_pmi_over_phsic_fit_time": round(pmi_s / max(phsic_s, 1e-9), 1),
            "train_hsic": round(phsic.hsic(), 6)}


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    per_seed = {str(seed + i): one_seed(s, seed + i) for i in range(s["seeds"])}
    names = ("phsic", "neural_pmi", "cosine")
    mean_auc = {n: round(sum(r["auc"][n] for r in per_seed.values()) / len(per_seed), 4) for n in names}
    plot = save_plot(out / "phsic.png", [
        {"title": "true vs false pairs, unseen names (ROC AUC)", "ylabel": "AUC", "bars": mean_auc},
    ], "PHSIC vs neural PMI vs cosine")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "mean_auc": mean_auc,
            "seeds": per_seed, "plot": plot}
