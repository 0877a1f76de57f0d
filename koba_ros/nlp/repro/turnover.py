"""Turn-over dropout (Kobayashi et al. 2020): one trained network tells which training instances are mislabeled and
which hurt held-out data, and removing the harmful ones helps.

Task: the robot's pick-and-place instructions ("put the toy that quacks in the top right box") labelled with the
catalog object they name (19 classes; names that fit two objects are left out). A share of the training labels is
replaced by a random other object, as a careless annotator would. One classifier is trained through turn-over dropout
on the noisy labels, then:

1. detection: rank training instances by self-influence and by influence on a clean validation set; report the share
   of planted wrong labels among the top k (k = how many were planted), against chance and against ranking by the
   trained model's own training loss (a strong, common heuristic; the paper's estimator does not need it to lose);
2. cleansing: retrain without the k instances most harmful to the validation set, without the k most self-influential,
   without the k of highest training loss, and without k random ones, each for as many steps as the whole set gets;
   compare test accuracy with the whole noisy set, with removing exactly the planted ones, and with clean labels.
   The turn-over network itself hardly fits wrong labels (each instance trains half of it), so the same removals
   are also retrained as a plain classifier of the same shape ("plain_..."), which memorises them, as the models
   whose training data one cleans usually do.

With mask_seeds > 1 (full size: 4) both estimates are also averaged over that many networks trained with independent
masks (influence.averaged), as extra rankings and removal arms ("..._avg").
"""
from __future__ import annotations

import random
from dataclasses import replace

import torch
from torch.nn import functional as F

from koba_ros.nlp.influence import influence_on, most_harmful, precision_at, self_influence
from koba_ros.nlp.repro.common import save_plot
from koba_ros.nlp.repro.object_references import object_reference_sentences
from koba_ros.nlp.text_classifier import ClassifierConfig, accuracy, encode_texts, fit_classifier, fit_classifiers

SIZES = {
    "test": dict(per_name=20, noise=0.3, embed=256, hidden=512, epochs=30, seeds=1, mask_seeds=1),
    "full": dict(per_name=20, noise=0.3, embed=512, hidden=1024, epochs=30, seeds=3, mask_seeds=4),
}
SIZES["quick"] = SIZES["test"]


def object_reference_data(seed: int, per_name: int):
    """The task's sentences shuffled and split 60 / 20 / 20 into train, validation and test, and the class count."""
    rng = random.Random(seed)
    by_name, classes = object_reference_sentences(rng, per_name)
    pairs = [pair for name in sorted(by_name) for pair in by_name[name]]
    rng.shuffle(pairs)
    a, b = int(0.6 * len(pairs)), int(0.8 * len(pairs))
    return pairs[:a], pairs[a:b], pairs[b:], classes


def plant_wrong_labels(labels: torch.Tensor, classes: int, share: float, seed: int):
    """A random `share` of the labels replaced by a uniformly drawn other class; returns (noisy, is_wrong)."""
    g = torch.Generator().manual_seed(seed)
    wrong = torch.rand(len(labels), generator=g) < share
    shift = torch.randint(1, classes, (len(labels),), generator=g)
    return torch.where(wrong, (labels + shift) % classes, labels), wrong


def found_curve(scores: torch.Tensor, wrong: torch.Tensor, points: int = 20):
    """Share of the planted wrong labels found when inspecting the top x of the ranking, x from 0 to all."""
    order = torch.argsort(scores, descending=True)
    found = torch.cumsum(wrong[order].float(), 0) / max(1, int(wrong.sum()))
    xs = [round(i / points, 3) for i in range(points + 1)]
    return xs, [0.0] + [found[max(0, int(x * len(order)) - 1)].item() for x in xs[1:]]


def one_seed(s: dict, seed: int) -> dict:
    train, val, test, classes = object_reference_data(seed, s["per_name"])
    config = ClassifierConfig(embed=s["embed"], hidden=s["hidden"], epochs=s["epochs"])
    x_train, x_val, x_test = (encode_texts([t for t, _ in part], config.buckets) for part in (train, val, test))
    clean, y_val, y_test = (torch.tensor([y for _, y in part]) for part in (train, val, test))
    noisy, wrong = plant_wrong_labels(clean, classes, s["noise"], seed)
    ids = torch.arange(len(train))
    models = fit_classifiers(x_train, noisy, classes, config, seed, s["mask_seeds"])
    model = models[0]
    own = self_influence(model, x_train, noisy)
    on_val = influence_on(model, ids, x_val, y_val)
    with torch.no_grad():
        train_loss = F.cross_entropy(model(x_train), noisy, reduction="none")
    k = int(wrong.sum())
    rankings = {"self_influence": own, "val_influence": -on_val, "train_loss": train_loss}
    if len(models) > 1:  # the same estimates averaged over networks with independent masks
        own_avg, on_val_avg = self_influence(models, x_train, noisy), influence_on(models, ids, x_val, y_val)
        rankings.update(self_influence_avg=own_avg, val_influence_avg=-on_val_avg)

    def retrained_without(removed: torch.Tensor, masked: bool = True) -> float:
        """Trained for about as many steps as on the whole set: removing data must not also mean less training.
        masked=False: a plain classifier of the same shape (one that memorises what it is given)."""
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[removed] = False
        same_steps = replace(config, epochs=round(config.epochs * len(train) / int(keep.sum())))
        return round(accuracy(fit_classifier(x_train[keep], noisy[keep], classes, same_steps, seed, ids[keep],
                                             masked), x_test, y_test), 4)

    harmful = most_harmful(on_val, k)
    random_k = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:k]
    top_self, top_loss = torch.argsort(own, descending=True)[:k], torch.argsort(train_loss, descending=True)[:k]
    averaged_arms = {}
    if len(models) > 1:
        averaged_arms = {
            "without_most_harmful_to_val_avg": retrained_without(most_harmful(on_val_avg, k)),
            "without_top_self_influence_avg": retrained_without(torch.argsort(own_avg, descending=True)[:k])}
    plain = fit_classifier(x_train, noisy, classes, config, seed, masked=False)
    return {
        "train": len(train), "val": len(val), "test": len(test), "classes": classes, "planted_wrong": k,
        "chance_precision": round(k / len(train), 4),
        "precision_at_k": {name: round(precision_at(score, wrong, k), 4) for name, score in rankings.items()},
        "found_curves": {name: found_curve(score, wrong) for name, score in rankings.items()},
        "negative_val_influence": int((on_val < 0).sum()),
        "test_accuracy": {
            "clean_labels": round(accuracy(fit_classifier(x_train, clean, classes, config, seed), x_test, y_test), 4),
            "noisy_all": round(accuracy(model, x_test, y_test), 4),
            "without_planted": retrained_without(wrong.nonzero().flatten()),
            "without_most_harmful_to_val": retrained_without(harmful),
            "without_top_self_influence": retrained_without(top_self),
            "without_top_train_loss": retrained_without(top_loss),
            "without_random": retrained_without(random_k),
            **averaged_arms,
            # the same removals (ranked by the turn-over network) for a plain classifier, which memorises its noise
            "plain_noisy_all": round(accuracy(plain, x_test, y_test), 4),
            "plain_without_planted": retrained_without(wrong.nonzero().flatten(), masked=False),
            "plain_without_top_self_influence": retrained_without(top_self, masked=False),
            "plain_without_top_train_loss": retrained_without(top_loss, masked=False),
            "plain_without_random": retrained_without(random_k, masked=False),
        },
        "train_accuracy_on_noisy_labels": {"turnover": round(accuracy(model, x_train, noisy), 4),
                                           "plain": round(accuracy(plain, x_train, noisy), 4)},
        "removed": {"most_harmful_to_val": len(harmful), "wrong_among_them": int(wrong[harmful].sum())},
    }


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    torch.manual_seed(seed)
    per_seed = {seed + i: one_seed(s, seed + i) for i in range(s["seeds"])}

    def mean(get):
        return round(sum(get(r) for r in per_seed.values()) / len(per_seed), 4)

    first = next(iter(per_seed.values()))
    summary = {
        "precision_at_k": {name: mean(lambda r, n=name: r["precision_at_k"][n]) for name in first["precision_at_k"]},
        "chance_precision": mean(lambda r: r["chance_precision"]),
        "test_accuracy": {name: mean(lambda r, n=name: r["test_accuracy"][n]) for name in first["test_accuracy"]},
        "train_accuracy_on_noisy_labels": {name: mean(lambda r, n=name: r["train_accuracy_on_noisy_labels"][n])
                                           for name in ("turnover", "plain")},
    }
    def short(name):
        return (name.replace("plain_", "").replace("without_", "-").replace("_to_val", "").replace("most_", "")
                .replace("top_", ""))

    curves = {name: tuple(curve) for name, curve in first["found_curves"].items()}
    curves["chance"] = (curves["self_influence"][0], curves["self_influence"][0])
    plot = save_plot(out / "turnover.png", [
        {"title": f"planted wrong labels found (seed {seed})", "xlabel": "share of training set inspected",
         "ylabel": "share of wrong labels found", "series": curves},
        *({"title": f"{kind} retrained, k = {first['planted_wrong']} removed", "xlabel": "", "ylabel": "accuracy",
           "bars": {short(name): v for name, v in first["test_accuracy"].items()
                    if name.startswith("plain_") == (kind == "plain classifier")}}
          for kind in ("turn-over classifier", "plain classifier")),
    ], "turn-over dropout: influence of training instances")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "summary": summary,
            "seeds": {str(k): {key: v for key, v in r.items() if key != "found_curves"} for k, r in per_seed.items()},
            "plot": plot}
