"""Layered PCFGs with latent rule choices (nlp/pcfg.py) and the metadata repro's pieces (nlp/repro/metadata.py)."""
import itertools
import math
import random

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.pcfg import LayeredGrammar, all_choices
from koba_ros.nlp.repro.metadata import Vocabulary, probe_accuracy, training_batch


def test_samples_derive_under_their_own_choice_and_one_changed_token_breaks_them():
    grammar = LayeredGrammar.random(depth=4, symbols=3, terminals=8, seed=0)
    rng = random.Random(1)
    ungrammatical = 0
    for _ in range(50):
        j, tokens = grammar.sample(rng)
        assert 2 ** 4 <= len(tokens) <= 3 ** 4 and all(0 <= t < 8 for t in tokens)
        assert grammar.derives(tokens, j) and j in grammar.choices_deriving(tokens)
        assert grammar.probability(tokens, j) > 0
        broken = list(tokens)
        i = rng.randrange(len(broken))
        broken[i] = (broken[i] + 1) % 8
        assert (grammar.log_probability(broken) == -math.inf) == (not grammar.choices_deriving(broken))
        ungrammatical += not grammar.choices_deriving(broken)
    assert ungrammatical >= 45  # measured 50 of 50: the grammar is strict, so grammaticality is a sharp test


def test_sentence_probabilities_sum_to_one_under_every_choice():
    """The inside probabilities of every string a small grammar can produce add up to 1 for each j: every
    derivation is counted once, including different derivations of the same string."""
    grammar = LayeredGrammar.random(depth=2, symbols=2, terminals=2, seed=3)
    strings = [s for n in range(4, 10) for s in itertools.product(range(2), repeat=n)]
    for j in all_choices(2):
        assert sum(grammar.probability(s, j) for s in strings) == pytest.approx(1.0, abs=1e-9)
    marginal = sum(math.exp(grammar.log_probability(s)) for s in strings if grammar.log_probability(s) > -math.inf)
    assert marginal == pytest.approx(1.0, abs=1e-9)


def test_prefix_probabilities_equal_the_sum_over_the_sentences_they_start():
    """Checked by enumeration on a grammar with ambiguous strings (each derivation counted once)."""
    grammar = LayeredGrammar.random(depth=2, symbols=2, terminals=2, seed=3)
    strings = [s for n in range(4, 10) for s in itertools.product(range(2), repeat=n)]
    for j in all_choices(2):
        whole = {s: grammar.probability(s, j) for s in strings}
        for prefix in {s[:k] for s in strings for k in (1, 3, 5, 7)}:
            brute = sum(p for s, p in whole.items() if s[:len(prefix)] == prefix)
            assert grammar.prefix_probability(prefix, j) == pytest.approx(brute, abs=1e-12), (j, prefix)


def test_the_posterior_over_the_latent_sharpens_with_the_prompt():
    grammar = LayeredGrammar.random(depth=4, symbols=3, terminals=8, seed=0)
    rng = random.Random(2)
    certainty = {1: [], 30: []}
    for _ in range(30):
        j, tokens = grammar.sample(rng)
        for k in certainty:
            post = grammar.posterior(tokens[:k])
            assert sum(post.values()) == pytest.approx(1.0) and post[j] > 0
            certainty[k].append(post[j])
    assert sum(certainty[30]) / 30 > sum(certainty[1]) / 30 + 0.2
    with pytest.raises(KobaError, match="no sentence of this grammar starts with"):
        grammar.posterior([99])


def test_sample_frequencies_match_the_inside_probability():
    grammar = LayeredGrammar.random(depth=2, symbols=2, terminals=3, seed=5)
    rng = random.Random(0)
    draws = [tuple(grammar.sample(rng, choice=(0, 1))[1]) for _ in range(4000)]
    top, count = max(((s, draws.count(s)) for s in set(draws)), key=lambda sc: sc[1])
    assert count / len(draws) == pytest.approx(grammar.probability(top, (0, 1)), abs=0.03)


def test_impossible_grammar_shapes_are_one_line_errors():
    with pytest.raises(KobaError, match="impossible shape"):
        LayeredGrammar.random(depth=0)
    with pytest.raises(KobaError, match="impossible shape"):
        LayeredGrammar.random(terminals=1)


def test_training_batches_put_metadata_in_the_prefix_and_count_only_terminals_and_the_end():
    grammar = LayeredGrammar.random(depth=3, symbols=2, terminals=4, seed=0)
    vocab = Vocabulary(grammar)
    j, tokens = grammar.sample(random.Random(0))
    prefixes = [vocab.prefix(j, 2), vocab.prefix(j, 0)]
    x, y = training_batch([tokens, tokens], prefixes, [0, 1], vocab, max_len=3 + grammar.max_length + 1)
    n = len(tokens)
    assert x[0, :3].tolist() == [vocab.metadata(0, j[0]), vocab.metadata(1, j[1]), vocab.mask]
    assert x[1, :3].tolist() == [vocab.mask] * 3
    assert x[0, 3:3 + n].tolist() == tokens
    assert (y[:, :2] == -100).all()                       # the prefix's own tokens are never targets
    assert y[0, 2:2 + n].tolist() == tokens and y[0, 2 + n] == vocab.eos
    assert (y[0, 3 + n:] == -100).all()                   # padding
    assert (x[0, 3:] < vocab.eos + 1).all()               # no metadata token outside the prefix


def test_linear_probes_read_a_planted_latent_and_not_noise():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(600, 16, generator=g)
    j = torch.stack([(h[:, 0] > 0), torch.randint(2, (600,), generator=g).bool()], 1).long()
    accuracy = probe_accuracy(h[:400], j[:400], h[400:], j[400:])
    assert accuracy[0] > 0.95 and 0.35 < accuracy[1] < 0.65
