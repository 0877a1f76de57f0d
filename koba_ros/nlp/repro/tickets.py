"""Multi-ticket ensembles (Kobayashi et al. 2022): from one pretrained model, an ensemble of members fine-tuned as
different sparse sub-networks (30 % pruned) is more diverse, and more accurate, than an ensemble of members
fine-tuned densely with different seeds (the paper: MRPC 85.05 vs 84.34, "on some tasks").

Task: the robot's pick instructions labelled with the object they name (repro/object_references.py); the classifier
is trained on every name except the catalog's descriptions ("put the toy that quacks in ...") and tested on those
alone. They share few words with the names it was trained on, so what links them is pretraining: a TextEncoder
pretrained as a masked word LM on unlabelled text, the pick instructions of the training names (not the held-out
descriptions' test sentences; before session 23 they were included) plus sentences that pair names of one object
("the toy that quacks is also called the rubber duck").

Arms, each `members` models fine-tuned from the same pretrained encoder with member seeds 0 .. members - 1:
  dense:         every weight fine-tuned;
  random_subnetwork: a random 30 % of the prunable weights pruned, no search (the control: is it the search or
                 the sparsity?);
  tickets:       each member its own ticket, iterative magnitude pruning to 30 % in rounds of 10 %, the members
                 differing only in their fine-tuning seeds;
  multi_ticket:  the same, with the random-mask L1 term during the search (lambda 1e-3 on a random half of each
                 matrix), which makes the members' pruned weights overlap less.
Reported: each arm's mean member accuracy, ensemble accuracy (mean of probabilities), how often two members
disagree on a test sentence, and how much two members' pruned weights overlap (Jaccard).
"""
from __future__ import annotations

import itertools
import random

import torch

from koba_ros.nlp.contextual_augmentation import AugmenterConfig
from koba_ros.nlp.encoder_classifier import FineTuneConfig, encode_words, fine_tune, pretrain_masked_lm
from koba_ros.nlp.lottery_tickets import (
    ensemble_probabilities,
    find_ticket,
    full_masks,
    prunable_weights,
    random_masks,
    sparsity_of,
)
from koba_ros.nlp.repro.common import save_plot
from koba_ros.nlp.repro.object_references import description_names, object_reference_sentences, thesaurus_sentences

SIZES = {
    "test": dict(per_name=3, test_per_name=10, members=2, pretrain_steps=1000, epochs=10, seeds=1),
    "full": dict(per_name=6, test_per_name=20, members=4, pretrain_steps=2000, epochs=20, seeds=5),
}
SIZES["quick"] = SIZES["test"]
# arm: lambda of the random-mask L1 in the ticket search; None: no pruning; "random": a random 30 % pruned
ARMS = {"dense": None, "random_subnetwork": "random", "tickets": 0.0, "multi_ticket": 1e-3}
SPARSITY, RATE, L1_SHARE = 0.3, 0.1, 0.5


@torch.no_grad()
def member_report(models, x_test, y_test) -> dict:
    probs = ensemble_probabilities(models, x_test)
    predictions = [m(x_test).argmax(-1) for m in models]
    pairs = list(itertools.combinations(predictions, 2))
    return {"member_accuracy": round(sum(float((p == y_test).float().mean()) for p in predictions)
                                     / len(predictions), 4),
            "ensemble_accuracy": round(float((probs.argmax(-1) == y_test).float().mean()), 4),
            "disagreement": round(sum(float((a != b).float().mean()) for a, b in pairs) / len(pairs), 4)}


def pruned_overlap(tickets) -> float:
    """Mean Jaccard index of two members' sets of pruned weights."""
    pruned = [torch.cat([(~m).flatten() for m in masks.values()]) for masks in tickets]
    pairs = list(itertools.combinations(pruned, 2))
    return round(sum(float((a & b).sum() / (a | b).sum()) for a, b in pairs) / len(pairs), 4)


def one_seed(s: dict, seed: int) -> dict:
    rng = random.Random(seed)
    by_name, classes = object_reference_sentences(rng, s["test_per_name"])
    held_out = description_names()
    train = [p for n in sorted(by_name) if n not in held_out for p in by_name[n][:s["per_name"]]]
    test = [p for n in sorted(by_name) if n in held_out for p in by_name[n]]
    # the held-out names' sentences (the test inputs) are not in the pretraining text: evaluation inputs unseen
    unlabelled = thesaurus_sentences(rng) + [t for n, pairs in by_name.items() if n not in held_out for t, _ in pairs]
    pretrained = pretrain_masked_lm(unlabelled, AugmenterConfig(steps=s["pretrain_steps"]), seed)
    x_train, x_test = (encode_words(pretrained, [t for t, _ in part]) for part in (train, test))
    y_train, y_test = (torch.tensor([y for _, y in part]) for part in (train, test))
    config = FineTuneConfig(epochs=s["epochs"])

    def tune(masks, penalty, member_seed):  # modulo 2**64, torch's seed range (find_ticket adds 1000 per round)
        return fine_tune(pretrained, x_train, y_train, classes, config, member_seed % 2**64, masks, penalty)

    dense_masks = full_masks(prunable_weights(pretrained.encoder))
    arms = {}
    for arm, l1 in ARMS.items():
        seeds = [(seed * 100 + k) % 2**64 for k in range(s["members"])]  # as ticket_ensemble.member_seed
        if l1 is None:
            models, tickets = [tune(None, None, k) for k in seeds], None
        else:
            tickets = [random_masks(dense_masks, SPARSITY, k) if l1 == "random" else
                       find_ticket(tune, dense_masks, SPARSITY, RATE, l1, L1_SHARE, k) for k in seeds]
            models = [tune(masks, None, k) for masks, k in zip(tickets, seeds, strict=True)]
        arms[arm] = member_report(models, x_test, y_test)
        if tickets:
            arms[arm]["pruned_overlap"] = pruned_overlap(tickets)
            arms[arm]["sparsity"] = round(sum(map(sparsity_of, tickets)) / len(tickets), 4)
    return {"train_sentences": len(train), "test_sentences": len(test), "classes": classes,
            "unlabelled_sentences": len(unlabelled), "arms": arms}


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    per_seed = {str(seed + i): one_seed(s, seed + i) for i in range(s["seeds"])}
    keys = ("member_accuracy", "ensemble_accuracy", "disagreement", "pruned_overlap")
    summary = {arm: {k: round(sum(r["arms"][arm][k] for r in per_seed.values()) / len(per_seed), 4)
                     for k in keys if k in next(iter(per_seed.values()))["arms"][arm]} for arm in ARMS}
    wins = sum(r["arms"]["multi_ticket"]["ensemble_accuracy"] > r["arms"]["dense"]["ensemble_accuracy"]
               for r in per_seed.values())
    plot = save_plot(out / "tickets.png", [
        {"title": f"ensemble of {s['members']}, unseen descriptions", "xlabel": "", "ylabel": "accuracy",
         "bars": {arm: v["ensemble_accuracy"] for arm, v in summary.items()}},
        {"title": "mean member", "xlabel": "", "ylabel": "accuracy",
         "bars": {arm: v["member_accuracy"] for arm, v in summary.items()}},
        {"title": "two members disagree", "xlabel": "", "ylabel": "share of test sentences",
         "bars": {arm: v["disagreement"] for arm, v in summary.items()}},
    ], f"multi-ticket ensembles (mean of {s['seeds']} seeds)")
    return {"size": size or ("quick" if quick else "full"), "settings": {**s, "arms": ARMS, "sparsity": SPARSITY,
            "rate": RATE, "l1_share": L1_SHARE}, "summary": summary,
            "multi_ticket_beats_dense_on_seeds": f"{wins}/{len(per_seed)}", "seeds": per_seed, "plot": plot}
