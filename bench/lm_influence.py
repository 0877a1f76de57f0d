"""Turn-over dropout on a language model: does `koba lm influence --checkpoint` find the training documents that
matter for a target text, and does removing them change the target loss as it says?

    PYTHONPATH=. .venv/bin/python bench/lm_influence.py [--seeds 3] [--steps 300] [--mask-seeds 1]

A collection of 48 documents: 24 of the robot's spoken commands (40 sentences each, from the training part of
bench/command_corpus's split) and 24 pieces of standard-library docstrings (about the same bytes each). The target
is the held-out command sentences. config/lm/tiny.yaml (d 64, 2 layers, byte-level) is trained on the collection with
`model.turnover_p: 0.5` and `document_mask: true`, then every document's influence on the target is read off the
one trained network. Measured, per seed:

1. ranking: the share of command documents among the 24 most helpful (chance 0.5), and the mean influence of each kind;
2. counterfactual, within the command documents (where a kind label cannot explain the ranking): retrain without the
   6 command documents the estimator calls most helpful, without the 6 it calls least helpful, and without 6 random
   ones; if the estimator captures influence, the first removal raises the target loss most.

With --mask-seeds K > 1 the collection is trained K times with model.turnover_seed 0 .. K-1 and the estimates are
averaged (`koba lm influence` with K --checkpoint); the rank correlation of two single runs' estimates over the
command documents shows how much of a within-kind ranking is the chance of which half-network got which document.

Prints one JSON object.
"""
import argparse
import csv
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from command_corpus import command_sentences

from koba_ros.nlp.data import builtin_corpus
from koba_ros.nlp.evaluation import evaluate_checkpoint
from koba_ros.nlp.lm_influence import document_influence
from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
KINDS, PER_KIND, SENTENCES, REMOVED = ("command", "prose"), 24, 40, 6


def write_collection(folder: Path, seed: int) -> Path:
    sentences = command_sentences()
    cut = int(0.9 * len(sentences))
    train, held = sentences[:cut], sentences[cut:]
    rng = random.Random(seed)
    docs = folder / "docs"
    docs.mkdir()
    for d in range(PER_KIND):
        text = "\n".join(rng.sample(train, SENTENCES)) + "\n"
        (docs / f"command_{d:02d}.txt").write_text(text)
    prose = builtin_corpus(2_000_000)
    size = len((docs / "command_00.txt").read_text())
    for d in range(PER_KIND):
        start = rng.randrange(0, len(prose) - size)
        (docs / f"prose_{d:02d}.txt").write_text(prose[start:start + size])
    target = folder / "target.txt"
    target.write_text("\n".join(held[:400]) + "\n")
    return target


def train_run(folder: Path, docs: str, target: Path, out: str, steps: int, seed: int, mask_seed: int = 0) -> str:
    config = TrainConfig.from_file(str(REPO / "config/lm/tiny.yaml"), [
        f"train_data={docs}", f"val_data={target}", f"out={folder / out}", f"steps={steps}", f"seed={seed}",
        "document_mask=true", "model.turnover_p=0.5", f"model.turnover_seed={mask_seed}", f"eval_every={steps}",
        f"ckpt_every={steps}"])
    config.progress = False
    train(config)
    return str(folder / out)


def retrained_loss(folder: Path, names: list[str], removed: list[str], target: Path, arm: str, steps: int,
                   seed: int) -> float:
    """The target loss of a run trained (mask seed 0) on the documents `names` without `removed`."""
    kept = folder / f"kept_{arm}"
    kept.mkdir()
    for n in names:
        if n not in removed:
            (kept / Path(n).name).write_text(Path(n).read_text())
    return evaluate_checkpoint(train_run(folder, str(kept), target, arm, steps, seed), str(target))["loss"]


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (no ties among float influences)."""
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def influences(folder: Path, runs: list[str], target: Path, name: str) -> tuple[dict, list[str]]:
    result = document_influence(runs, str(target), str(folder / name))
    with open(result["csv"]) as f:
        rows = list(csv.DictReader(f))
    return result, rows


def one_seed(seed: int, steps: int, mask_seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        target = write_collection(folder, seed)
        runs = [train_run(folder, str(folder / "docs"), target, f"all_{m}", steps, seed, m) for m in range(mask_seeds)]
        t0 = time.perf_counter()
        result, rows = influences(folder, runs, target, "influence")
        influence_s = time.perf_counter() - t0
        kind = {r["name"]: Path(r["name"]).name.split("_")[0] for r in rows}
        ranked = [r["name"] for r in rows]  # most helpful first
        value = {r["name"]: float(r["influence_on_target"]) for r in rows}
        commands = [n for n in ranked if kind[n] == "command"]
        agreement = {}
        if mask_seeds > 1:  # two single networks' estimates over the same command documents
            single = [{r["name"]: float(r["influence_on_target"]) for r in influences(folder, [run], target,
                                                                                       f"single_{m}")[1]}
                      for m, run in enumerate(runs[:2])]
            agreement["rank_correlation_of_two_single_runs_on_commands"] = round(
                spearman([single[0][n] for n in commands], [single[1][n] for n in commands]), 4)
            agreement["rank_correlation_of_two_single_runs_on_all"] = round(
                spearman([single[0][n] for n in ranked], [single[1][n] for n in ranked]), 4)
        out = {"seed": seed, **agreement, "target_loss": result["target_loss"],
               "influence_seconds": round(influence_s, 1),
               "command_share_of_top_24": sum(kind[n] == "command" for n in ranked[:PER_KIND]) / PER_KIND,
               "mean_influence": {k: round(statistics.mean(v for n, v in value.items() if kind[n] == k), 5)
                                  for k in KINDS}}
        losses = {arm: retrained_loss(folder, ranked, removed, target, arm, steps, seed) for arm, removed in (
            ("without_most_helpful", commands[:REMOVED]), ("without_least_helpful", commands[-REMOVED:]),
            ("without_random", random.Random(seed + 1).sample(commands, REMOVED)))}
        out["target_loss_after_retraining"] = losses
        out["difference_most_minus_least"] = round(losses["without_most_helpful"]
                                                   - losses["without_least_helpful"], 5)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mask-seeds", type=int, default=1, help="runs with independent masks to average")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [one_seed(s, args.steps, args.mask_seeds) for s in range(args.seeds)]
    print(json.dumps({"bench": "lm_influence", "steps": args.steps, "mask_seeds": args.mask_seeds, "seeds": seeds,
                      "mean_command_share_of_top_24": round(statistics.mean(s["command_share_of_top_24"]
                                                                            for s in seeds), 4),
                      "differences_most_minus_least": [s["difference_most_minus_least"] for s in seeds],
                      "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
