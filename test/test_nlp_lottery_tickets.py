"""Multi-ticket ensembles (koba_ros.nlp.lottery_tickets, encoder_classifier): global magnitude pruning, the
prune-rewind rounds, the random-mask L1 term and masked fine-tuning, each checked against what it must do."""
import pytest
import torch

from koba_ros.nlp.contextual_augmentation import AugmenterConfig
from koba_ros.nlp.encoder_classifier import FineTuneConfig, encode_words, fine_tune, pretrain_masked_lm
from koba_ros.nlp.lottery_tickets import (
    ensemble_probabilities,
    find_ticket,
    full_masks,
    magnitude_masks,
    prunable_weights,
    random_l1,
    random_masks,
    random_selections,
    sparsity_of,
)

TEXTS = ["put the duck in the top box", "move the cup to the left box", "put the red cup in the top box",
         "place the duck into the left box"]
LABELS = torch.tensor([0, 1, 1, 0])


@pytest.fixture(scope="module")
def pretrained():
    return pretrain_masked_lm(TEXTS, AugmenterConfig(d_model=16, n_layers=2, n_heads=2, steps=30), seed=0)


def test_magnitude_pruning_is_global_keeps_what_was_pruned_and_hits_the_sparsity_exactly():
    weights = {"a": torch.tensor([[0.1, -5.0], [0.3, 0.2]]), "b": torch.tensor([[4.0, -0.05, 2.0, 1.0]])}
    masks = full_masks(weights)
    masks["a"][0, 1] = False                     # large, but already pruned: stays pruned and counts
    new = magnitude_masks(weights, masks, 0.5)   # 4 of 8: the pruned -5.0, then -0.05, 0.1, 0.2
    assert new["a"].tolist() == [[False, False], [True, False]]
    assert new["b"].tolist() == [[True, False, True, True]]
    assert sparsity_of(new) == 0.5
    with pytest.raises(ValueError, match="already prune"):
        magnitude_masks(weights, new, 0.25)
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(weights, masks, 1.0)


def test_a_random_sub_network_has_the_sparsity_exactly_and_its_seed_decides_which():
    masks = full_masks({"blocks.0.a": torch.zeros(30, 10), "blocks.0.b": torch.zeros(7, 10)})
    one, again, other = random_masks(masks, 0.3, 1), random_masks(masks, 0.3, 1), random_masks(masks, 0.3, 2)
    assert sparsity_of(one) == pytest.approx(0.3) and all(torch.equal(one[n], again[n]) for n in masks)
    assert not all(torch.equal(one[n], other[n]) for n in masks)
    assert 0.15 < 1 - one["blocks.0.b"].float().mean() < 0.45      # spread over every matrix, not the first one
    # independent of the L1 selection drawn with the same seed (else the pruned set would lie inside it)
    selected = random_selections(masks, 0.5, 1)
    pruned_selected = sum(int((~one[n] & selected[n]).sum()) for n in masks) / sum(int((~one[n]).sum()) for n in masks)
    assert 0.35 < pruned_selected < 0.65


def test_prunable_weights_are_the_block_matrices_named_alike_in_a_wrapper(pretrained):
    inner = prunable_weights(pretrained.encoder)
    assert inner and all(name.startswith("blocks.") and w.dim() == 2 for name, w in inner.items())
    assert set(prunable_weights(pretrained)) == set(inner)   # the Augmenter wraps the encoder as .encoder


def test_masked_fine_tuning_starts_from_the_pretrained_survivors_and_keeps_the_pruned_at_zero(pretrained):
    ids = encode_words(pretrained, TEXTS)
    masks = magnitude_masks(prunable_weights(pretrained.encoder), full_masks(prunable_weights(pretrained.encoder)),
                            0.3)
    start = fine_tune(pretrained, ids, LABELS, 2, FineTuneConfig(epochs=0), seed=0, masks=masks)
    for name, w in prunable_weights(start).items():
        assert torch.equal(w, prunable_weights(pretrained.encoder)[name] * masks[name])
    trained = fine_tune(pretrained, ids, LABELS, 2, FineTuneConfig(epochs=5, lr=1e-2), seed=0, masks=masks)
    for name, w in prunable_weights(trained).items():
        assert not w[~masks[name]].any()
        assert not torch.equal(w[masks[name]], prunable_weights(pretrained.encoder)[name][masks[name]])


def test_the_random_l1_term_shrinks_only_its_selection():
    weights = {"blocks.0.w": torch.nn.Parameter(torch.ones(20, 20))}
    selection = random_selections(weights, 0.5, seed=3)
    assert 0.35 < selection["blocks.0.w"].float().mean() < 0.65
    assert random_l1(weights, selection) == selection["blocks.0.w"].sum()
    opt = torch.optim.SGD(weights.values(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        random_l1(weights, selection).backward()
        opt.step()
    w, chosen = weights["blocks.0.w"].detach(), selection["blocks.0.w"]
    assert torch.allclose(w[chosen], torch.full_like(w[chosen], 0.5)) and torch.equal(w[~chosen], torch.ones_like(
        w[~chosen]))
    assert not torch.equal(random_selections(weights, 0.5, 3)["blocks.0.w"], random_selections(weights, 0.5, 4)[
        "blocks.0.w"])


def test_find_ticket_prunes_ten_percent_per_round_rewinding_each_time_and_passes_the_penalty(pretrained):
    ids = encode_words(pretrained, TEXTS)
    seen = []

    def tune(masks, penalty, seed):
        seen.append((round(sparsity_of(masks), 2), penalty is not None, seed))
        return fine_tune(pretrained, ids, LABELS, 2, FineTuneConfig(epochs=2), seed, masks, penalty)

    dense = full_masks(prunable_weights(pretrained.encoder))
    ticket = find_ticket(tune, dense, sparsity=0.3, rate=0.1, l1=1e-3, seed=7)
    assert [s for s, _, _ in seen] == [0.0, 0.1, 0.2] and all(p for _, p, _ in seen)
    assert len({s for _, _, s in seen}) == 3           # each round its own fine-tuning seed
    assert abs(sparsity_of(ticket) - 0.3) < 1e-3
    seen.clear()
    find_ticket(tune, dense, sparsity=0.2, rate=0.1, l1=0.0, seed=7)
    assert [(s, p) for s, p, _ in seen] == [(0.0, False), (0.1, False)]
    with pytest.raises(ValueError, match="whole number of rounds"):
        find_ticket(tune, dense, sparsity=0.25, rate=0.1)


def test_the_ensemble_averages_probabilities():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.tensor(logits)

        def forward(self, x):
            return self.logits.expand(len(x), -1)

    members = [Fixed([0.0, 2.0]), Fixed([1.0, 0.0])]
    expected = (torch.softmax(torch.tensor([0.0, 2.0]), 0) + torch.softmax(torch.tensor([1.0, 0.0]), 0)) / 2
    assert torch.allclose(ensemble_probabilities(members, torch.zeros(3, 1)), expected.expand(3, -1))


def test_words_outside_the_pretraining_vocabulary_or_length_get_one_line_errors(pretrained):
    with pytest.raises(ValueError, match="not in the pretrained vocabulary: 'giraffe'"):
        encode_words(pretrained, ["put the giraffe in the top box"])
    with pytest.raises(ValueError, match="1 to 8 words, not 0"):
        encode_words(pretrained, ["..."])
    with pytest.raises(ValueError, match="not 9"):
        encode_words(pretrained, ["put the duck in the top box " + "box box"])
