"""Turn-over dropout (Kobayashi et al. 2020): per-instance masks, the exact split into an instance's sub-network and
the flipped one that never learns it, and the influence estimator against its definition."""
import pytest
import torch
from torch.nn import functional as F

from koba_ros.nlp.influence import influence_on, most_harmful, precision_at, self_influence
from koba_ros.nlp.text_classifier import (
    ClassifierConfig,
    TurnOverClassifier,
    encode_texts,
    fit_classifier,
    fit_classifiers,
)
from koba_ros.nlp.turnover_dropout import TurnOverDropout, instance_masks

SMALL = ClassifierConfig(buckets=512, embed=16, hidden=24, epochs=2, batch=4)


def test_masks_are_a_fixed_function_of_the_instance():
    ids = torch.tensor([0, 1, 2, 7, 123456789])
    a = instance_masks(ids, 256)
    assert torch.equal(a, instance_masks(ids, 256))                     # the same on every call
    assert torch.equal(a[3], instance_masks(torch.tensor([7]), 256)[0])  # independent of the batch around it
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, instance_masks(ids, 256, salt=1))          # each layer its own masks
    assert not torch.equal(a, instance_masks(ids, 256, seed=1))
    many = instance_masks(torch.arange(2000), 256, p=0.3)
    assert abs(many.float().mean().item() - 0.7) < 0.01                  # keeps 1 - p
    assert many.float().mean(0).min() > 0.6                              # every unit kept about as often
    with pytest.raises(ValueError, match="non-negative"):
        instance_masks(torch.tensor([-1]), 8)


def test_flipped_mask_is_the_complement_with_the_other_scale():
    layer = TurnOverDropout(32, salt=0, p=0.25)
    x = torch.ones(3, 5, 32)
    ids = torch.tensor([4, 9, 4])
    seen, unseen = layer(x, ids), layer(x, ids, flip=True)
    assert torch.equal(layer(x), x)                                      # no ids: the whole network
    assert torch.all((seen == 0) != (unseen == 0))                       # every unit in exactly one sub-network
    assert torch.allclose(seen.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert torch.equal(unseen.unique(), torch.tensor([0.0, 4.0]))
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[0, 0], seen[0, 4])  # per instance, across positions


def _nonzero_grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).abs() > 0 for n, p in model.named_parameters()}


def test_an_instance_never_trains_its_flipped_sub_network():
    """The gradient of instance i's loss touches no parameter entry that the flipped sub-network uses, except the
    output bias: removing either turn-over layer breaks this."""
    torch.manual_seed(0)
    model = TurnOverClassifier(5, SMALL)
    ngrams = encode_texts(["put the red block in the top left box"], SMALL.buckets)
    probe = encode_texts(["the toy that quacks", "move the blue cup to the lower right box", "yes"], SMALL.buckets)
    i = torch.tensor([3])
    learned = _nonzero_grads(model, F.cross_entropy(model(ngrams, i), torch.tensor([2])))
    # what the flipped sub-network of i computes with, on any input (every class's logit)
    used = _nonzero_grads(model, model(probe, i.expand(3), flip=True).sum())
    shared = {n for n in learned if (learned[n] & used[n]).any()}
    assert shared == {"out.bias"}
    assert learned["hidden.weight"].any() and used["hidden.weight"].any()


def test_influence_equals_its_definition_instance_by_instance():
    torch.manual_seed(0)
    texts = ["put the duck in the top left box", "the red block", "move the cup", "yes please", "the left one"]
    ngrams, labels = encode_texts(texts, SMALL.buckets), torch.tensor([0, 1, 2, 3, 3])
    model = fit_classifier(ngrams, labels, 4, SMALL, seed=0, instance_ids=torch.tensor([10, 11, 12, 13, 14]))
    ids = torch.tensor([10, 11, 12, 13, 14])
    targets, target_labels = encode_texts(["the duck", "a cup", "the red one"], SMALL.buckets), torch.tensor([0, 2, 1])

    def loss(x, y, i, flip):
        with torch.no_grad():
            return F.cross_entropy(model(x[None], torch.tensor([i]), flip), y[None]).item()

    brute_self = torch.tensor([loss(ngrams[k], labels[k], ids[k], True) - loss(ngrams[k], labels[k], ids[k], False)
                               for k in range(5)])
    assert torch.allclose(self_influence(model, ngrams, labels, ids), brute_self, atol=1e-5)
    brute = torch.tensor([[loss(targets[v], target_labels[v], i, True) - loss(targets[v], target_labels[v], i, False)
                           for v in range(3)] for i in ids.tolist()])
    assert torch.allclose(influence_on(model, ids, targets, target_labels, chunk=2, reduce=False), brute, atol=1e-5)
    assert torch.allclose(influence_on(model, ids, targets, target_labels), brute.sum(1), atol=1e-4)


def test_ranking_helpers():
    influence = torch.tensor([0.5, -2.0, -0.1, 3.0, -1.0])
    assert most_harmful(influence, 2).tolist() == [1, 4]
    assert most_harmful(influence, 10).tolist() == [1, 4, 2]  # never an instance that helps
    assert precision_at(torch.tensor([0.1, 0.9, 0.8, 0.2]), torch.tensor([False, True, False, True]), 2) == 0.5


def test_estimates_of_several_mask_seeds_are_averaged():
    texts = ["put the duck in the top left box", "the red block", "move the cup", "yes please", "the left one"]
    ngrams, labels = encode_texts(texts, SMALL.buckets), torch.tensor([0, 1, 2, 3, 3])
    models = fit_classifiers(ngrams, labels, 4, SMALL, seed=0, mask_seeds=2)
    assert models[0].drop_embed.seed == 0 and models[1].drop_embed.seed == 1  # independent masks
    each = [self_influence(m, ngrams, labels) for m in models]
    assert torch.allclose(self_influence(models, ngrams, labels), (each[0] + each[1]) / 2)
    ids = torch.arange(5)
    each = [influence_on(m, ids, ngrams[:2], labels[:2]) for m in models]
    assert torch.allclose(influence_on(models, ids, ngrams[:2], labels[:2]), (each[0] + each[1]) / 2)
