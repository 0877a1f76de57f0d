"""Contextual augmentation (Kobayashi 2018): a label-conditional masked word LM proposes replacements that keep the
label."""
import random

import pytest
import torch

from koba_ros.nlp.contextual_augmentation import MASK, AugmenterConfig, augment, fit_augmenter, words_of
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

NAMES = {0: ["duck", "duckie", "ducky"], 1: ["cup", "mug", "beaker"]}
TEMPLATES = ["put the {} in the box", "move the {} to the left box", "pick up the {}"]


@pytest.fixture(scope="module")
def augmenter():
    texts, labels = [], []
    for label, names in NAMES.items():
        for name in names:
            for t in TEMPLATES:
                texts.append(t.format(name))
                labels.append(label)
    return fit_augmenter(texts, labels, 2, AugmenterConfig(d_model=32, steps=300), seed=0)


def test_the_label_decides_which_words_fill_the_slot(augmenter):
    for label in NAMES:
        ids = augmenter.encode([words_of("put the duck in the box")], [label])
        ids[0, 3] = MASK  # the object word
        probs = torch.softmax(augmenter(ids)[0, 3], -1)
        mass = {y: sum(probs[augmenter.index[w]].item() for w in ns) for y, ns in NAMES.items()}
        assert mass[label] > 0.8 and mass[label] > 10 * mass[1 - label]


def test_augmented_copies_keep_the_words_they_do_not_replace(augmenter):
    rng = random.Random(0)
    assert augment(augmenter, "Put the Duck in the box!", 0, rng, p=0.0) == "put the duck in the box"
    copies = [augment(augmenter, "put the duck in the box", 0, rng, p=1.0) for _ in range(20)]
    assert all(len(c.split()) == 6 and set(c.split()) <= set(augmenter.words) for c in copies)
    assert len(set(copies)) > 1
    logits = augmenter(augmenter.encode([["pick", "up", "the", "mug"]], [1]))
    assert torch.isinf(logits[..., :3 + augmenter.classes]).all()  # pad, mask and labels are never proposed


def test_sentences_without_words_are_refused():
    with pytest.raises(ValueError, match="at least one word"):
        fit_augmenter(["put the cup", "!!"], [0, 1], 2)
