"""Contextual augmentation (Kobayashi 2018): with few labelled sentences, adding copies whose words were replaced by a
label-conditional bidirectional LM's predictions makes a classifier more accurate; without the label condition the
replacements break labels and hurt.

Task: the robot's pick instructions labelled with the object they name (repro/object_references.py), `per_name`
sentences per name, split by object name into folds (every test sentence names its object in new words). For each
fold the augmenter (contextual_augmentation.py) is trained on the training sentences alone, each training sentence
gets `copies` augmented copies (p = 0.25 per word, temperature 1), and the softmax bag-of-n-grams classifier
(instance_based.fit_softmax) is trained on: the sentences alone; plus label-conditional copies; plus copies from the
same LM without the label. Accuracy is pooled over the folds.
"""
from __future__ import annotations

import random

import torch

from koba_ros.nlp.contextual_augmentation import AugmenterConfig, augment, fit_augmenter
from koba_ros.nlp.instance_based import InstanceConfig, fit_softmax
from koba_ros.nlp.repro.common import save_plot
from koba_ros.nlp.repro.object_references import object_reference_sentences
from koba_ros.nlp.text_classifier import encode_texts

SIZES = {
    "test": dict(per_name=(2,), folds=3, copies=2, steps=600, seeds=1),
    "full": dict(per_name=(2, 4), folds=3, copies=2, steps=600, seeds=3),
}
SIZES["quick"] = SIZES["test"]
ARMS = ("original", "label_conditional", "unconditional")


def one_run(per_name: int, s: dict, seed: int) -> dict:
    rng = random.Random(seed)
    by_name, classes = object_reference_sentences(rng, per_name)
    names = sorted(by_name)
    rng.shuffle(names)
    config = InstanceConfig(epochs=30)
    correct, total, examples = dict.fromkeys(ARMS, 0), 0, []
    for fold in range(s["folds"]):
        test_names = set(names[fold::s["folds"]])
        train = [p for n in names if n not in test_names for p in by_name[n]]
        test = [p for n in names if n in test_names for p in by_name[n]]
        x_test, y_test = encode_texts([t for t, _ in test], config.buckets), torch.tensor([y for _, y in test])

        def correct_after_training_on(pairs, x_test=x_test, y_test=y_test):
            model = fit_softmax(encode_texts([t for t, _ in pairs], config.buckets),
                                torch.tensor([y for _, y in pairs]), classes, config, seed)
            with torch.no_grad():
                return int((model(x_test).argmax(-1) == y_test).sum())

        correct["original"] += correct_after_training_on(train)
        for arm, conditional in (("label_conditional", True), ("unconditional", False)):
            augmenter = fit_augmenter([t for t, _ in train], [y for _, y in train], classes,
                                      AugmenterConfig(steps=s["steps"], conditional=conditional), seed)
            draw = random.Random(seed * 1000 + fold)
            copies = [(augment(augmenter, t, y, draw), y) for t, y in train for _ in range(s["copies"])]
            correct[arm] += correct_after_training_on(train + copies)
            if fold == 0:
                examples += [{"arm": arm, "original": t, "copy": c} for (t, _), (c, _) in
                             zip(train[:3], copies[:6:2], strict=True)]
        total += len(test)
    return {"test_sentences": total, "train_sentences_per_fold": len(train),
            "accuracy": {arm: round(correct[arm] / total, 4) for arm in ARMS}, "examples": examples}


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    results = {f"per_name={n}": {str(seed + i): one_run(n, s, seed + i) for i in range(s["seeds"])}
               for n in s["per_name"]}
    summary = {key: {arm: round(sum(r["accuracy"][arm] for r in runs.values()) / len(runs), 4) for arm in ARMS}
               for key, runs in results.items()}
    plot = save_plot(out / "augment.png", [
        {"title": f"unseen names, {key} (mean of {s['seeds']} seeds)", "ylabel": "accuracy", "bars": accs}
        for key, accs in summary.items()], "contextual augmentation")
    return {"size": size or ("quick" if quick else "full"),
            "settings": {**s, "per_name": list(s["per_name"])}, "summary": summary, "results": results, "plot": plot}
