"""Instance-based learning (Ouchi et al. 2020): classifying by similarity to training instances is about as accurate
as a softmax classifier on the same encoder, and its answers come with the training instances that caused them.

Task: the robot's pick instructions labelled with the catalog object they name (repro/object_references.py), split
by object name into folds, so every test sentence names its object in words no training sentence used for it ("put
the stuffed bear ..." with "teddy bear" and "plush bear" in training). Each fold trains both models on the other
folds' names; accuracy is pooled over all folds. The explanation check: how often the training sentence most similar
to a test sentence carries the predicted label, under the instance-based model's own similarity and, for the softmax
model, post hoc in its hidden layer.
"""
from __future__ import annotations

import random

import torch

from koba_ros.nlp.instance_based import InstanceConfig, fit_instance_based, fit_softmax, predict
from koba_ros.nlp.repro.common import save_plot
from koba_ros.nlp.repro.object_references import object_reference_sentences
from koba_ros.nlp.text_classifier import encode_texts

SIZES = {
    "test": dict(per_name=6, folds=3, epochs=30, seeds=1),
    "full": dict(per_name=6, folds=5, epochs=30, seeds=3),
}
SIZES["quick"] = SIZES["test"]


@torch.no_grad()
def softmax_predictions(model, x_test, x_train, y_train):
    """(predictions, nearest training instance in the softmax model's hidden layer: a post-hoc explanation)."""
    def features(x):
        return torch.relu(model.hidden(model.embed(x)))
    nearest = (features(x_test) @ features(x_train).T).argmax(1)
    return model(x_test).argmax(-1), nearest


def one_seed(s: dict, seed: int) -> dict:
    rng = random.Random(seed)
    by_name, classes = object_reference_sentences(rng, s["per_name"])
    names = sorted(by_name)
    rng.shuffle(names)
    config = InstanceConfig(epochs=s["epochs"])
    correct = {"instance_based": 0, "softmax": 0}
    agrees = {"instance_based": 0, "softmax": 0}
    total, examples = 0, []
    for fold in range(s["folds"]):
        test_names = set(names[fold::s["folds"]])
        train = [p for n in names if n not in test_names for p in by_name[n]]
        test = [p for n in names if n in test_names for p in by_name[n]]
        x_train, x_test = (encode_texts([t for t, _ in part], config.buckets) for part in (train, test))
        y_train, y_test = (torch.tensor([y for _, y in part]) for part in (train, test))
        encoder = fit_instance_based(x_train, y_train, classes, config, seed)
        predicted, neighbours = predict(encoder, x_test, x_train, y_train, classes)
        softmax = fit_softmax(x_train, y_train, classes, config, seed)
        soft_predicted, soft_nearest = softmax_predictions(softmax, x_test, x_train, y_train)
        for name, p, nearest in (("instance_based", predicted, neighbours[:, 0]),
                                 ("softmax", soft_predicted, soft_nearest)):
            correct[name] += int((p == y_test).sum())
            agrees[name] += int((y_train[nearest] == p).sum())
        total += len(test)
        if fold == 0:
            examples = [{"sentence": test[i][0], "label": test[i][1], "predicted": int(predicted[i]),
                         "because_of": [train[j][0] for j in neighbours[i].tolist()]}
                        for i in range(0, len(test), max(1, len(test) // 5))][:5]
    return {"test_sentences": total, "classes": classes,
            "accuracy": {k: round(v / total, 4) for k, v in correct.items()},
            "nearest_neighbour_has_predicted_label": {k: round(v / total, 4) for k, v in agrees.items()},
            "examples": examples}


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    per_seed = {str(seed + i): one_seed(s, seed + i) for i in range(s["seeds"])}

    def mean(key, model):
        return round(sum(r[key][model] for r in per_seed.values()) / len(per_seed), 4)

    summary = {key: {m: mean(key, m) for m in ("instance_based", "softmax")}
               for key in ("accuracy", "nearest_neighbour_has_predicted_label")}
    plot = save_plot(out / "instance.png", [
        {"title": "accuracy on unseen object names", "ylabel": "accuracy", "bars": summary["accuracy"]},
        {"title": "nearest training sentence has the predicted label", "ylabel": "share",
         "bars": summary["nearest_neighbour_has_predicted_label"]},
    ], "instance-based vs softmax classification")
    return {"size": size or ("quick" if quick else "full"), "settings": s, "summary": summary, "seeds": per_seed,
            "plot": plot}
