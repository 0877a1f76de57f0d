"""Grounding core without a trained model: lexicon, generator, features, symbolic baseline, dialogue logic."""
import numpy as np
import pytest

from koba_ros.grounding import lexicon
from koba_ros.grounding.dialogue import NOUNS, Dialogue, Settings
from koba_ros.grounding.features import PAIR_DIM, object_features, pair_features
from koba_ros.grounding.grounder import Grounding
from koba_ros.grounding.instructions import HELD_OUT_WORDS, TEMPLATES, InstructionGenerator
from koba_ros.grounding.scenes import PerceivedScene, label_objects
from koba_ros.grounding.symbolic import SymbolicGrounder
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene

SCENE = [{"name": "red_cube", "box": "top_left", "xy": [-0.05, 0.0]},
         {"name": "red_cube", "box": "bottom_right", "xy": [0.0, 0.0]},
         {"name": "duck", "box": "top_left", "xy": [0.05, 0.0]},
         {"name": "blue_ball", "box": "top_right", "xy": [0.0, 0.02]}]


def synthetic(scene=SCENE, seed=0):
    return perceive_synthetic(scene, np.random.default_rng(seed))


@pytest.mark.parametrize("text,box", [
    ("put it in the top left box", "top_left"), ("lower-right corner", "bottom_right"),
    ("the upper right one", "top_right"), ("the left box at the bottom", "bottom_left"), ("nowhere", None)])
def test_parse_box(text, box):
    assert lexicon.parse_box(text) == box


def test_answer_words():
    assert lexicon.ordinal("the first one") == 0 and lexicon.ordinal("the second") == 1
    assert lexicon.yes_no("yes please") is True and lexicon.yes_no("no, not that") is False
    assert lexicon.is_cancel("never mind") and not lexicon.is_cancel("the blue one")
    assert lexicon.side("the one on the left") == "left" and lexicon.side("top left") is None
    assert lexicon.colour_name((0.6, 0.07, 0.07)) == "red" and lexicon.colour_name((0.7, 0.62, 0.07)) == "yellow"


def _samples(split, n=300, seed=0):
    rng = np.random.default_rng(seed)
    gen = InstructionGenerator(split, seed)
    out = []
    while len(out) < n:
        scene = random_scene(rng)
        s = gen.generate(synthetic(scene, int(rng.integers(1 << 30))), [o["name"] for o in scene])
        if s is not None:
            out.append(s)
    return out


def test_generator_labels_are_consistent():
    for s in _samples("train"):
        assert s.kind in ("clear", "ambiguous", "absent", "no_box") and s.text
        if s.kind == "clear":
            assert s.referents == [s.target] and s.destination
        elif s.kind == "ambiguous":
            assert len(s.referents) >= 2 and s.target in s.referents and s.answer
        elif s.kind == "absent":
            assert s.referents == [] and s.target is None
        else:
            assert s.destination is None and s.answer_destination and lexicon.parse_box(s.answer)


def test_held_out_phrasings_never_reach_training():
    train = " || ".join(s.text.lower() for s in _samples("train", 600))
    test = " || ".join(s.text.lower() for s in _samples("test", 600))
    for phrase in ("rubber duckie", "football", "coffee cup", "corner", "furthest to the", "i'd like"):
        assert phrase not in train
    assert any(w in test for w in HELD_OUT_WORDS) and "corner" in test
    assert not set(TEMPLATES["train"]) & set(TEMPLATES["test"])


def test_features_shapes_and_bad_appearance():
    objs = synthetic()
    x = object_features(objs, 5)
    assert x.shape == (4, object_features([], 5).shape[1]) and np.isfinite(x).all()
    assert pair_features(objs).shape == (4, 4, PAIR_DIM)
    from koba_ros.errors import KobaError
    with pytest.raises(KobaError, match="appearance features"):
        object_features(objs, 7)


def test_label_objects_matches_nearest_within_radius():
    objs = synthetic()
    truth = np.array([o.position[:2] for o in objs])
    assert label_objects(objs, truth) == [0, 1, 2, 3]
    assert label_objects(objs, truth + 1.0) == [None] * 4


def _symbolic():
    scenes = []
    rng = np.random.default_rng(1)
    for k in range(30):
        sc = random_scene(rng, 18)
        scenes.append(PerceivedScene(k, synthetic(sc, k), [o["name"] for o in sc], list(range(18))))
    return SymbolicGrounder(scenes)


def test_symbolic_baseline_parses_and_matches():
    sym = _symbolic()
    objs = synthetic()
    g = sym.ground("put the duck in the bottom left box", objs)
    assert g.ranked()[0][0] == 2 and g.destination[0] == "bottom_left"
    g = sym.ground("move the red cube to the top right box", objs)
    assert {i for i, p in g.ranked() if p > 0.4} == {0, 1}
    assert sym.ground("put the green duck in the top left box", objs).none_prob == 1.0


class TableGrounder:
    """A grounder with fixed answers per text, to drive the dialogue logic exactly. The dialogue names objects by
    grounding "the <noun>" texts: object i answers to nouns[i] (default: 0 -> duck, 1 -> teddy bear, ...)."""

    def __init__(self, table, n, nouns=None):
        self.table, self.n = table, n
        self.nouns = nouns or list(NOUNS[:n])

    def ground(self, text, objects):
        if text.startswith("the ") and text[4:] in NOUNS and text not in self.table:
            probs = [1.0 if self.nouns[i] == text[4:] else 0.0 for i in range(len(objects))]
            return Grounding(np.array(probs + [0.0 if any(probs) else 1.0]), np.array([0, 0, 0, 0, 1.0]))
        probs, dest = self.table.get(text, ([0.0] * len(objects) + [1.0], [0, 0, 0, 0, 1]))
        return Grounding(np.array(probs[:len(objects)] + probs[-1:], float), np.array(dest, float))

    def ground_batch(self, texts, object_lists):
        return [self.ground(t, o) for t, o in zip(texts, object_lists, strict=True)]


def test_dialogue_acts_asks_and_refuses_by_probability():
    objs = synthetic()
    # The words name the box the box head reads (a box they never name is not said; test_grounding_dialogue.py).
    # Object 0 answers to "duck" here (TableGrounder's default nouns); words that name no kind would make the
    # other red cube a look-alike.
    table = {"the duck to the top left box": ([0.9, 0.05, 0.03, 0.02, 0.0], [0.95, 0, 0, 0, 0.05]),
             "two to the top right box": ([0.48, 0.47, 0.03, 0.02, 0.0], [0, 0.97, 0, 0, 0.03]),
             "absent": ([0.05, 0.05, 0.0, 0.0, 0.9], [0, 1, 0, 0, 0]),
             "pick up the duck": ([0.95, 0.02, 0.02, 0.01, 0.0], [0.1, 0.1, 0.1, 0.1, 0.6])}
    g = TableGrounder(table, 4)
    r = Dialogue(g, objs).start("the duck to the top left box")
    assert (r.status, r.target, r.destination) == ("done", 0, "top_left")
    d = Dialogue(g, objs)
    r = d.start("two to the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 1}
    assert "top left" in r.text and "bottom right" in r.text   # names what tells them apart: the box
    r = d.answer("the one in the bottom right")
    assert (r.status, r.target, r.destination) == ("done", 1, "top_right")
    assert Dialogue(g, objs).start("absent").status == "rejected"
    d = Dialogue(g, objs)
    assert d.start("pick up the duck").status == "question" and d.pending == "destination"
    r = d.answer("upper right")
    assert (r.status, r.target, r.destination) == ("done", 0, "top_right")


def test_dialogue_answers_first_one_cancel_yes_no_and_gives_up():
    objs = synthetic()
    g = TableGrounder({"two to the bottom right box": ([0.5, 0.45, 0.03, 0.02, 0.0], [0, 0, 0, 1, 0]),
                       "maybe to the bottom right box": ([0.55, 0.0, 0.0, 0.0, 0.45], [0, 0, 0, 1, 0])}, 4)
    d = Dialogue(g, objs)
    d.start("two to the bottom right box")
    assert d.answer("the first one").target == 0
    d = Dialogue(g, objs)
    d.start("two to the bottom right box")
    assert d.answer("cancel").status == "cancelled"
    d = Dialogue(g, objs)
    assert d.start("maybe to the bottom right box").text.startswith("Do you mean") and d.pending == "confirm"
    assert d.answer("yes").status == "done"
    d = Dialogue(g, objs)
    d.start("maybe to the bottom right box")
    assert d.answer("no").status == "rejected"
    d = Dialogue(g, objs, Settings(max_turns=2))
    d.start("two to the bottom right box")
    r1 = d.answer("bananas")
    assert r1.status == "question" and r1.text.startswith("Sorry")
    r2 = d.answer("purple monkeys")
    assert r2.status == "rejected" and "leave everything" in r2.text
    assert d.answer("the first one").status == "rejected"   # finished dialogues stay finished


def test_dialogue_bad_input_never_crashes():
    objs = synthetic()
    g = TableGrounder({}, 4)
    for text in ("", "   ", "🤖🤖", "x" * 10000, None):
        assert Dialogue(g, objs).start(text).status in ("rejected", "question", "done", "cancelled")
    assert Dialogue(g, []).start("put the duck in the top left box").status == "rejected"


def test_word_dropout_packs_kept_tokens_and_keeps_the_first():
    import torch

    from koba_ros.grounding.training import drop_tokens

    torch.manual_seed(0)
    states = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6, 1).repeat(1, 1, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    packed, packed_mask = drop_tokens(states, mask, 0.5)
    for b in range(2):
        kept = packed[b, packed_mask[b], 0].tolist()
        assert kept[0] == states[b, 0, 0]                         # the first token always stays
        assert kept == sorted(kept)                               # order kept, packed to the front
        assert set(kept) <= set(states[b, mask[b], 0].tolist())   # never a padding position
        assert not packed[b, ~packed_mask[b]].any()
    assert drop_tokens(states, mask, 0.0)[1].equal(mask)         # p = 0 changes nothing
    all_dropped, all_mask = drop_tokens(states, mask, 0.999999)
    assert all_mask.sum(1).tolist() == [1, 1]
