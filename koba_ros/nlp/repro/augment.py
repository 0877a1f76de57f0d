"""Contextual augmentation (Kobayashi 2018): with few labelled sentences, training on sentences whose words were
replaced by a label-conditional bidirectional LM's predictions makes a classifier more accurate; without the label
condition the replacements break labels and hurt.

Task: the robot's pick instructions labelled with the object they name (repro/object_references.py), `per_name`
sentences per name, split by object name into folds (every test sentence names its object in new words). For each
fold the augmenter (contextual_augmentation.py) is trained on the training sentences alone, and the softmax
bag-of-n-grams classifier (instance_based.fit_softmax) is trained on: the sentences alone; the sentences augmented by
the label-conditional LM; the sentences augmented by the same LM without the label. Accuracy is pooled over the folds.

Augmentation on the fly, as in the paper: Kobayashi 2018, section 2 (each word w_i is replaced by a word sampled from
the label-conditional LM's annealed distribution p(. | y, S without w_i)^(1/tau), section 2.2 for the label), applied
stochastically each time a sentence is used in training, as the paper's released code does (pfnet-research/
contextual_augmentation: replacement ratio 0.25, temperature 1, applied in the classifier's forward at every training
step). Here: every epoch each training sentence is used once, freshly augmented (each word replaced with probability
p = 0.25 from the original context, temperature 1; a sentence keeps all its words with probability 0.75^words). So
all three arms have the same epochs, batches (the same order) and optimiser updates. Session 14's version trained the
augmented arms on the sentences plus 2 fixed copies for the same epochs, i.e. 3x the updates (docs/nlp.md
"Session 23").
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
    "test": dict(per_name=(2,), folds=3, p=0.25, epochs=30, steps=600, seeds=1),
    "full": dict(per_name=(2, 4), folds=3, p=0.25, epochs=30, steps=600, seeds=3),
}
SIZES["quick"] = SIZES["test"]
ARMS = ("original", "label_conditional", "unconditional")


def one_run(per_name: int, s: dict, seed: int) -> dict:
    rng = random.Random(seed)
    by_name, classes = object_reference_sentences(rng, per_name)
    names = sorted(by_name)
    rng.shuffle(names)
    config = InstanceConfig(epochs=s["epochs"])
    correct, total, examples = dict.fromkeys(ARMS, 0), 0, []
    for fold in range(s["folds"]):
        test_names = set(names[fold::s["folds"]])
        train = [p for n in names if n not in test_names for p in by_name[n]]
        test = [p for n in names if n in test_names for p in by_name[n]]
        x_test, y_test = encode_texts([t for t, _ in test], config.buckets), torch.tensor([y for _, y in test])
        x_train, y_train = encode_texts([t for t, _ in train], config.buckets), torch.tensor([y for _, y in train])

        def correct_after_training(epoch_ngrams=None, x_test=x_test, y_test=y_test, x_train=x_train,
                                   y_train=y_train):
            model = fit_softmax(x_train, y_train, classes, config, seed, epoch_ngrams)
            with torch.no_grad():
                return int((model(x_test).argmax(-1) == y_test).sum())

        correct["original"] += correct_after_training()
        for arm, conditional in (("label_conditional", True), ("unconditional", False)):
            augmenter = fit_augmenter([t for t, _ in train], [y for _, y in train], classes,
                                      AugmenterConfig(steps=s["steps"], conditional=conditional), seed)
            draw = random.Random(seed * 1000 + fold)

            def fresh(epoch, augmenter=augmenter, draw=draw, train=train, arm=arm, fold=fold):
                """Epoch `epoch`'s training inputs: every training sentence once, freshly augmented."""
                texts = [augment(augmenter, t, y, draw, p=s["p"]) for t, y in train]
                if fold == 0 and epoch < 2:
                    examples.extend({"arm": arm, "epoch": epoch, "original": t, "augmented": a}
                                    for (t, _), a in zip(train[:3], texts[:3], strict=True))
                return encode_texts(texts, config.buckets)

            correct[arm] += correct_after_training(fresh)
        total += len(test)
    updates = -(-len(train) // config.batch) * config.epochs
    return {"test_sentences": total, "train_sentences_per_fold": len(train), "updates_per_arm_and_fold": updates,
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
