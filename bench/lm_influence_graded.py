"""Does an LM's turn-over influence track *how much* a document helps, not only which kind it is?

    cd bench && PYTHONPATH=..:. ../.venv/bin/python lm_influence_graded.py [--seeds 3] [--steps 300] [--mask-seeds 4]

bench/lm_influence.py found every command document ranked above every prose one, but no agreement between two runs
on which command document helps more: its 24 command documents were all drawn from one pool, so none helped more.
Here the 24 documents (40 sentences each) are graded: document d holds a share f_d = d / 23 of pick-and-place
instructions with a box ("place the football into the bottom left box") and the rest teleop commands and answers
("go right eight millimeters", "the yellow tube"). The target is 400 held-out box instructions, so f_d is how much
a document has of what the target needs. config/lm/tiny.yaml is trained `--mask-seeds` times on the collection with
model.turnover_p 0.5 and model.turnover_seed 0 .. K-1. Measured, per seed:

1. resolution: the rank correlation of the estimated influence with f_d, for one run and for the mean of K;
2. counterfactual: retrain without the 6 documents the averaged estimate calls most helpful and without the 6 it
   calls least helpful; the same with the 6 highest and lowest f_d (the oracle: how large the true effect is).

Prints one JSON object.
"""
import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch
from command_corpus import command_sentences
from lm_influence import influences, retrained_loss, spearman, train_run

DOCUMENTS, SENTENCES, REMOVED = 24, 40, 6
_PICK = re.compile(r"\b(put|place|move the|pick|box)\b")


def write_graded_collection(folder: Path, seed: int) -> tuple[Path, dict[str, float]]:
    """folder/docs/doc_DD.txt with f_d of box instructions, folder/target.txt; returns (target, {path: f_d})."""
    sentences = command_sentences()
    box = [s for s in sentences if " box" in s]
    other = [s for s in sentences if not _PICK.search(s)]
    target_sentences, box = box[:400], box[400:]
    rng = random.Random(seed)
    docs = folder / "docs"
    docs.mkdir()
    share = {}
    for d in range(DOCUMENTS):
        f = d / (DOCUMENTS - 1)
        n_box = round(f * SENTENCES)
        lines = rng.sample(box, n_box) + rng.sample(other, SENTENCES - n_box)
        rng.shuffle(lines)
        path = docs / f"doc_{d:02d}.txt"
        path.write_text("\n".join(lines) + "\n")
        share[str(path)] = n_box / SENTENCES
    target = folder / "target.txt"
    target.write_text("\n".join(target_sentences) + "\n")
    return target, share


def one_seed(seed: int, steps: int, mask_seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        target, share = write_graded_collection(folder, seed)
        runs = [train_run(folder, str(folder / "docs"), target, f"all_{m}", steps, seed, m) for m in range(mask_seeds)]
        names = sorted(share)
        estimates = {}
        for label, chosen in (("single", runs[:1]), (f"mean_of_{mask_seeds}", runs)):
            rows = influences(folder, chosen, target, f"influence_{label}")[1]
            estimates[label] = {r["name"]: float(r["influence_on_target"]) for r in rows}
        truth = [share[n] for n in names]
        out = {"seed": seed, "rank_correlation_with_share": {
            label: round(spearman([e[n] for n in names], truth), 4) for label, e in estimates.items()}}
        if mask_seeds > 1:
            other_single = {r["name"]: float(r["influence_on_target"])
                            for r in influences(folder, runs[1:2], target, "influence_second")[1]}
            out["rank_correlation_of_two_single_runs"] = round(
                spearman([estimates["single"][n] for n in names], [other_single[n] for n in names]), 4)
        averaged = estimates[f"mean_of_{mask_seeds}"]
        by_estimate = sorted(names, key=lambda n: -averaged[n])
        by_share = sorted(names, key=lambda n: (-share[n], n))
        losses = {arm: retrained_loss(folder, names, removed, target, arm, steps, seed) for arm, removed in (
            ("without_most_helpful", by_estimate[:REMOVED]), ("without_least_helpful", by_estimate[-REMOVED:]),
            ("without_highest_share", by_share[:REMOVED]), ("without_lowest_share", by_share[-REMOVED:]))}
        out["target_loss_after_retraining"] = losses
        out["estimate_difference_most_minus_least"] = round(losses["without_most_helpful"]
                                                            - losses["without_least_helpful"], 5)
        out["oracle_difference_highest_minus_lowest"] = round(losses["without_highest_share"]
                                                              - losses["without_lowest_share"], 5)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mask-seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    seeds = [one_seed(s, args.steps, args.mask_seeds) for s in range(args.seeds)]
    print(json.dumps({"bench": "lm_influence_graded", "steps": args.steps, "mask_seeds": args.mask_seeds,
                      "seeds": seeds,
                      "mean_rank_correlation_with_share": {
                          label: round(statistics.mean(s["rank_correlation_with_share"][label] for s in seeds), 4)
                          for label in seeds[0]["rank_correlation_with_share"]},
                      "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
