"""Catalog head of the grounding model (no trained weights), catalog phrases, and the three phrasing splits."""
import dataclasses
import zlib

import numpy as np
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.features import BASE_DIM, object_features, pair_features
from koba_ros.grounding.instructions import (
    BOX_PHRASES,
    EXTREME,
    HELD_OUT_WORDS,
    RELATION,
    TEMPLATES,
    UNSEEN_WORDS,
    VAL2_WORDS,
    VAL_WORDS,
    InstructionGenerator,
    word_split,
)
from koba_ros.grounding.model import GroundingNet
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene
from koba_ros.sim.catalog import load_catalog

SCENE = [{"name": "red_cylinder", "box": "top_left", "xy": [-0.05, 0.0]},
         {"name": "red_ball", "box": "top_left", "xy": [0.05, 0.0]},
         {"name": "duck", "box": "bottom_right", "xy": [0.0, 0.0]}]


class WordEncoder:
    """A frozen stand-in for MiniLM: every word a fixed random vector (no context), to test the plumbing."""

    dim = 16

    def __init__(self):
        self.table: dict[str, torch.Tensor] = {}

    def _vector(self, word):
        if word not in self.table:   # crc32, not hash(): the same vectors in every process
            self.table[word] = torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(word.encode())))
        return self.table[word]

    def __call__(self, texts):
        rows = []
        for t in texts:
            ws = t.lower().split() or ["."]
            rows.append(torch.stack([self._vector(w) for w in ws]))
        n = max(len(r) for r in rows)
        states, mask = torch.zeros(len(rows), n, self.dim), torch.zeros(len(rows), n, dtype=torch.bool)
        for i, r in enumerate(rows):
            states[i, :len(r)], mask[i, :len(r)] = r, True
        return states, mask


def _inputs(texts, objects, encoder):
    states, mask = encoder(texts)
    x = torch.from_numpy(object_features(objects, 4))[None].repeat(len(texts), 1, 1)
    pairs = torch.from_numpy(pair_features(objects))[None].repeat(len(texts), 1, 1, 1)
    return states, mask, x, pairs, torch.ones(len(texts), len(objects), dtype=torch.bool)


def test_catalog_phrases_name_every_entry_and_leave_out_words():
    catalog = load_catalog()
    full = catalog_phrases(catalog)
    assert full.entries == tuple(catalog) and set(full.entry_of) == set(range(len(catalog)))
    red_cylinder = full.entries.index("red_cylinder")
    assert full.entry_of[full.texts.index("the red can")] == red_cylinder
    assert "the black and white ball" in full.texts and "the white black and white ball" not in full.texts
    trained = catalog_phrases(catalog, leave_out=UNSEEN_WORDS)
    assert "the red can" not in trained.texts and "the red cylinder" in trained.texts
    assert "the red canister" in full.texts and "the red canister" not in trained.texts
    assert not any(w in t.split(" ", 1)[-1] for t in trained.texts for w in ("round thing", "football", "plushie"))
    with pytest.raises(KobaError, match="catalog lacks"):
        catalog_phrases(catalog, ("duck", "unicorn"))


def _net_with_catalog_head(scene_seed: int, features: np.ndarray):
    """A small GroundingNet with the catalog head, the word encoder, and SCENE's objects carrying `features`."""
    torch.manual_seed(0)
    enc = WordEncoder()
    objects = perceive_synthetic(SCENE, np.random.default_rng(scene_seed))
    for o in objects:
        o.features = features
    net = GroundingNet(enc.dim, 4, hidden=32)
    net.use_catalog(tuple(load_catalog()))
    return enc, objects, net


def test_catalog_head_outputs_and_checkpoint_round_trip():
    enc, objects, net = _net_with_catalog_head(0, np.arange(4, dtype=np.float32))
    net.set_catalog(catalog_phrases(load_catalog()), enc)
    net.eval()
    aux = {}
    inputs = _inputs(["put the red can in the top left box", "the duck"], objects, enc)
    target, dest, lm = net(*inputs, aux=aux)
    assert target.shape == (2, 4) and dest.shape == (2, 5) and lm.shape == (2, 3)
    assert aux["objects"].shape == (2, 3, len(load_catalog())) and aux["text"].shape == (2, len(load_catalog()))
    assert (net.catalog.kappa(aux["objects"], aux["text"]) <= 1e-6).all()   # a log-probability
    # A net built without the head (as the Grounder does) gets it from the checkpoint's weights.
    fresh = GroundingNet(enc.dim, 4, hidden=32)
    fresh.load_state_dict(net.state_dict())
    assert fresh.catalog is not None and fresh.catalog.entries == tuple(load_catalog())
    fresh.set_catalog(catalog_phrases(load_catalog()), enc)
    fresh.eval()
    assert torch.allclose(fresh(*inputs)[0], target)
    # An old checkpoint without the head still loads into a plain net.
    plain = GroundingNet(enc.dim, 4, hidden=32)
    plain.load_state_dict({k: v for k, v in GroundingNet(enc.dim, 4, hidden=32).state_dict().items()})
    assert plain.catalog is None and plain(*inputs)[0].shape == (2, 4)


def test_a_synonym_added_to_the_catalog_changes_what_the_words_match():
    """The text side reads the catalog it is given: adding "gizmo" to the duck's synonyms moves the words'
    entry distribution to the duck (same weights, no training)."""
    enc, objects, net = _net_with_catalog_head(1, np.zeros(4, dtype=np.float32))
    catalog = load_catalog()
    with torch.no_grad():
        net.catalog.proj.weight.copy_(torch.eye(*net.catalog.proj.weight.shape))   # identity: the plumbing
        net.catalog.proj.bias.zero_()
    net.eval()
    duck = tuple(catalog).index("duck")
    inputs = _inputs(["the gizmo"], objects, enc)

    def p_duck(cat):
        net.set_catalog(catalog_phrases(cat), enc)
        aux = {}
        with torch.no_grad():
            net(*inputs, aux=aux)
        return float(aux["text"].softmax(-1)[0, duck])

    with_gizmo = dict(catalog)
    with_gizmo["duck"] = dataclasses.replace(catalog["duck"], synonyms=(*catalog["duck"].synonyms, "gizmo"))
    assert p_duck(with_gizmo) > 2 * p_duck(catalog)


def _texts(split, n=400, seed=0):
    rng = np.random.default_rng(seed)
    gen = InstructionGenerator(split, seed)
    out = []
    while len(out) < n:
        scene = random_scene(rng)
        s = gen.generate(perceive_synthetic(scene, rng), [o["name"] for o in scene])
        if s is not None:
            out.append(s)
    return out


def test_validation_phrasings_are_in_neither_training_nor_test():
    assert not VAL_WORDS & HELD_OUT_WORDS and all(word_split(w) == "val" for w in VAL_WORDS)
    assert not VAL2_WORDS & (VAL_WORDS | HELD_OUT_WORDS) and all(word_split(w) == "val2" for w in VAL2_WORDS)
    for table in (TEMPLATES, BOX_PHRASES):
        assert not set(table["val"]) & (set(table["train"]) | set(table["test"]))
        assert not set(table["val2"]) & (set(table["train"]) | set(table["test"]) | set(table["val"]))
    for table in (EXTREME, RELATION):
        for side in ("left", "right"):
            assert not set(table["val"][side]) & (set(table["train"][side]) | set(table["test"][side]))
    train = " || ".join(f" {s.text.lower()} " for s in _texts("train"))
    val = _texts("val")
    for w in VAL_WORDS | VAL2_WORDS:
        assert f" {w} " not in train and f"{w} " not in train, w
    assert any(w in s.text.lower() for s in val for w in VAL_WORDS)
    assert "furthest" not in train and ("most to the left" in train or "most to the right" in train)
    # every sample says which catalog entries its object words fit
    for s in val:
        assert s.kind == "absent" or (s.entries and all(s.names[i] in s.entries for i in s.referents))


def test_object_features_match_the_per_object_definition():
    """The vectorised features equal the per-object definition (colorsys hue, ranks among box mates)."""
    import colorsys

    objects = perceive_synthetic(random_scene(np.random.default_rng(3)), np.random.default_rng(3))
    for o in objects:
        o.features = np.ones(2, dtype=np.float32)
    x = object_features(objects, 2)
    for i, o in enumerate(objects):
        h, s, v = colorsys.rgb_to_hsv(*np.clip(o.mean_rgb, 0, 1))
        assert np.allclose(x[i, 3:6], [np.cos(2 * np.pi * h) * s, np.sin(2 * np.pi * h) * s, v], atol=1e-5)
        mates = [m for m in objects if m.box == o.box]
        left = sum(m.bbox[0] + m.bbox[2] / 2 < o.bbox[0] + o.bbox[2] / 2 for m in mates)
        assert x[i, 13] == pytest.approx(left / max(len(mates) - 1, 1))
    assert x.shape == (len(objects), BASE_DIM + 2)


def test_training_says_known_nouns_in_colours_nothing_has():
    """"the green duck" (no entry is a green duck) is an absent-object instruction in training; the test split is
    generated exactly as before (it never draws from that stream)."""
    train = [s for s in _texts("train", 1500) if s.kind == "absent" and not s.entries]
    assert train and all(s.referents == [] and s.target is None for s in train)
    catalog = load_catalog()
    for s in train:
        words = s.text.lower()
        assert any(f"{c} {syn}" in words for e in catalog.values() for syn in e.synonyms
                   for c in ("red", "green", "blue", "yellow", "white", "brown", "tan", "black") if c != e.color)
    assert not [s for s in _texts("test", 600) if s.kind == "absent" and not s.entries]
