"""Contextual augmentation's repro (repro/augment.py) gives every arm the same training budget: the augmented arms see
each training sentence once an epoch, freshly augmented, so they take as many optimiser updates, in the same batches,
as the arm trained on the sentences alone (session 23; before, they trained on the sentences plus 2 fixed copies for
the same epochs: 3x the updates). The augmenter is stubbed, so this runs in about a second."""
import torch

import koba_ros.nlp.instance_based as instance_based
import koba_ros.nlp.repro.augment as repro_augment
from koba_ros.nlp.instance_based import InstanceConfig, fit_softmax
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

EPOCHS = 3  # not the old fixed copies (2), so the count of augmented sentences tells the two apart


def test_every_arm_gets_the_same_updates_and_the_augmented_arms_fresh_sentences_each_epoch(monkeypatch):
    batches, augmented = [], []
    real_train_epochs = instance_based.train_epochs

    def counting_train_epochs(model, n, config, seed, batch_loss):
        batches.append([])

        def counted(rows):
            batches[-1].append(rows.tolist())
            return batch_loss(rows)

        real_train_epochs(model, n, config, seed, counted)

    def stub_augment(augmenter, text, label, rng, **_):
        augmented.append(text)
        return f"{text} variant{rng.randrange(3)}"

    monkeypatch.setattr(instance_based, "train_epochs", counting_train_epochs)
    monkeypatch.setattr(repro_augment, "fit_augmenter", lambda *a, **k: None)
    monkeypatch.setattr(repro_augment, "augment", stub_augment)
    monkeypatch.setattr(repro_augment, "InstanceConfig", lambda epochs: InstanceConfig(epochs=EPOCHS, embed=8,
                                                                                       hidden=8, buckets=256))
    s = dict(folds=2, p=0.25, epochs=EPOCHS, copies=2, steps=1)
    repro_augment.one_run(1, s, seed=0)
    assert len(batches) == 3 * s["folds"]  # original, label-conditional, unconditional per fold
    sentences = 0
    for fold in range(s["folds"]):
        original, conditional, unconditional = batches[3 * fold:3 * fold + 3]
        n = 1 + max(max(rows) for rows in original)  # the fold's training sentences
        sentences += n
        assert len(original) == EPOCHS * -(-n // 32)
        assert conditional == original and unconditional == original  # the same batches, so the same updates
    # each augmented arm augments each training sentence once an epoch (fresh draws, not fixed copies)
    assert len(augmented) == 2 * EPOCHS * sentences


def test_fit_softmax_trains_on_each_epochs_inputs_and_is_unchanged_without_them():
    torch.manual_seed(0)
    x, y = torch.randint(1, 256, (40, 5)), torch.randint(0, 3, (40,))
    config = InstanceConfig(epochs=3, embed=8, hidden=8, buckets=256)
    plain = fit_softmax(x, y, 3, config, seed=1)
    same = fit_softmax(x, y, 3, config, seed=1, epoch_ngrams=lambda epoch: x)
    for a, b in zip(plain.parameters(), same.parameters(), strict=True):
        assert torch.equal(a, b)  # a callable giving the same inputs every epoch changes nothing
    asked = []
    fit_softmax(x, y, 3, config, seed=1, epoch_ngrams=lambda epoch: asked.append(epoch) or x.flip(1))
    assert asked == [0, 1, 2]
