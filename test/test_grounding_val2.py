"""The second validation split "val2" (session 8): new phrasings in every slot and new catalog words, none of which
training, the first validation split or the held-out split says, and none of which reaches training (the catalog
head's training texts, the made-up words and homographs, the generated training instructions)."""
import itertools
import re
from types import SimpleNamespace

import numpy as np
import pytest

from koba_ros.grounding import instructions as ins
from koba_ros.grounding import lexicon, novel_words, training
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.dialogue import NOUNS, Dialogue, said_kinds
from koba_ros.grounding.grounder import Grounding
from koba_ros.grounding.symbolic import SymbolicGrounder
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene
from koba_ros.sim.catalog import BOXES, load_catalog

FLAT = (ins.TEMPLATES, ins.NO_DEST_TEMPLATES, ins.POLITE, ins.TAIL, ins.BOX_PHRASES, ins.LOCATION, ins.GENERIC)
BY_SIDE = (ins.EXTREME, ins.RELATION)
OTHER_SPLITS = ("train", "val", "test")
# Words val2 phrasings share with the other splits: articles, prepositions, pronouns, "is", "and", "for", and the
# side words (labels). Everything else a val2 phrasing says is new.
SHARED_FUNCTION_WORDS = {"the", "a", "in", "into", "to", "on", "it", "is", "you", "and", "for", "left", "right"}
# Made-up words training could draw (seeds of the committed and candidate models); see test_no_made_up_word_...
TRAINING_SEEDS = range(5)


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", t.lower()))}


def _phrasings(*splits: str) -> list[str]:
    out = [t for table in FLAT for split in splits for t in table[split]]
    return out + [t for table in BY_SIDE for split in splits for ts in table[split].values() for t in ts]


def _val2_words() -> set[str]:
    """Every word a val2 phrasing says, "back"/"front" of the box phrasings included."""
    return _words(_phrasings("val2")) | set(ins.FAR_NEAR.values())


def _samples(split: str, n: int, seed: int, kind: str | None = None):
    rng, gen, out = np.random.default_rng(seed), ins.InstructionGenerator(split, seed), []
    while len(out) < n:
        scene = random_scene(rng)
        objects = perceive_synthetic(scene, np.random.default_rng(int(rng.integers(1 << 30))))
        names = [o["name"] for o in scene]
        s = gen.sample(objects, names, kind) if kind else gen.generate(objects, names)
        if s is not None:
            out.append(s)
    return out


def test_val2_has_new_phrasings_in_every_slot():
    sizes = {id(ins.TEMPLATES): 7, id(ins.NO_DEST_TEMPLATES): 3, id(ins.POLITE): 3, id(ins.TAIL): 2,
             id(ins.BOX_PHRASES): 4, id(ins.LOCATION): 2, id(ins.GENERIC): 1}
    for table in FLAT:
        assert len(table["val2"]) == sizes[id(table)], table["val2"]
        assert not set(table["val2"]) & {t for s in OTHER_SPLITS for t in table[s]}, table["val2"]
    for table in BY_SIDE:
        for side in ("left", "right"):
            assert len(table["val2"][side]) == 1
            assert not set(table["val2"][side]) & {t for s in OTHER_SPLITS for t in table[s][side]}
    shared = _val2_words() & _words(_phrasings(*OTHER_SPLITS))
    assert shared <= SHARED_FUNCTION_WORDS, sorted(shared - SHARED_FUNCTION_WORDS)
    # no val2 phrasing word is a catalog word (it would read as an object: "can you ...")
    catalog = _words(w for e in load_catalog().values() for w in (*e.synonyms, *e.descriptions)
                     if ins.word_split(w) != "val2")
    assert _val2_words() & catalog <= {"the", "a", "and", "you"}, sorted(_val2_words() & catalog)


def test_the_check_sees_a_val2_word_added_to_another_split():
    """Not vacuous: a training template with "plonk" or a held-out box noun "pocket" is caught."""
    other = _words(_phrasings(*OTHER_SPLITS) + ["plonk {obj} in {dest}", "the {v} {h} pocket"])
    assert {"plonk", "pocket"} <= (_val2_words() & other) - SHARED_FUNCTION_WORDS


def test_val2_catalog_words_name_every_kind_and_are_no_other_splits_words():
    catalog = load_catalog()
    said = {w: {n for n, e in catalog.items() if w in (*e.synonyms, *e.descriptions)} for w in ins.VAL2_WORDS}
    assert all(said.values()), [w for w, entries in said.items() if not entries]       # all in the catalog
    assert all(any(ins.word_split(w) == "val2" for w in (*e.synonyms, *e.descriptions)) for e in catalog.values())
    assert 15 <= len(ins.VAL2_WORDS) <= 25
    assert not ins.VAL2_WORDS & (ins.HELD_OUT_WORDS | ins.VAL_WORDS)
    assert {ins.word_split(w) for w in ins.VAL2_WORDS} == {"val2"} and ins.UNSEEN_WORDS >= ins.VAL2_WORDS
    # Each names exactly the entries it was added to, and no other split's text contains it: the symbolic parser
    # and the dialogue (longest catalog phrase first) read other splits' texts as before.
    others = [p for e in catalog.values() for p in (*e.synonyms, *e.descriptions) if ins.word_split(p) != "val2"]
    others += [t for t in _phrasings(*OTHER_SPLITS)]
    for w in ins.VAL2_WORDS:
        bare = " ".join(lexicon.words(w.removeprefix("the ")))
        assert not [o for o in others if f" {bare} " in " " + " ".join(lexicon.words(o)) + " "], w
        assert said_kinds(f"put {w} in the top left box") == said[w], w
    # the synonyms[0] the scripted person and the ASR templates say are training words
    assert all(ins.word_split(e.synonyms[0]) == "train" for e in catalog.values())


def test_val2_words_are_none_of_novel_words_lists():
    catalog = load_catalog()
    val2 = _val2_words() | _words(ins.VAL2_WORDS)
    new = val2 - _words(_phrasings(*OTHER_SPLITS)) - _words(
        w for e in catalog.values() for w in (*e.synonyms, *e.descriptions) if ins.word_split(w) != "val2")
    assert {"duckling", "plonk", "pocket", "back", "guy"} <= new
    assert not new & (novel_words.REWORDABLE | novel_words.CONTAINER_WORDS | {"gizmo", "puck", "widget", "orb"})
    assert not val2 & set(novel_words.homograph_words(catalog))
    assert new <= novel_words.phrasing_vocabulary(catalog)          # so no made-up word can be one of them


def test_no_made_up_word_of_training_is_a_val2_word_or_moved_by_them():
    """The made-up object and function words training draws are the ones it drew before val2 existed (none of
    the new words was ever drawn), and none is a val2 word."""
    catalog = load_catalog()
    vocabulary = novel_words.phrasing_vocabulary(catalog)
    val2 = _val2_words() | _words(ins.VAL2_WORDS)
    without = vocabulary - (val2 - _words(_phrasings(*OTHER_SPLITS)) - _words(
        w for e in catalog.values() for w in (*e.synonyms, *e.descriptions) if ins.word_split(w) != "val2"))
    for seed in TRAINING_SEEDS:
        words = novel_words.pseudo_words(800, seed, vocabulary)
        assert words == novel_words.pseudo_words(800, seed, without) and not set(words) & val2, seed


def test_training_reads_no_val2_word_or_phrasing(monkeypatch, tmp_path):
    """training.train up to the catalog head: its training catalog, its generated instructions (made-up words and
    nonce phrasings included) and its made-up words' texts say no val2 catalog word and no val2 phrasing word."""
    seen = {}

    class Stop(Exception):
        pass

    def catalog_phrases_then_stop(catalog, entries=None, leave_out=frozenset()):
        seen["leave_out"] = set(leave_out)
        seen["texts"] = catalog_phrases(catalog, entries, leave_out).texts
        raise Stop

    real_novel = training.NovelWords

    def novel_spy(samples, *args, **kwargs):
        novel = real_novel(samples, *args, **kwargs)
        seen["samples"] = [s.text for s in samples] + novel.texts()
        return novel

    monkeypatch.setattr(training, "catalog_phrases", catalog_phrases_then_stop)
    monkeypatch.setattr(training, "NovelWords", novel_spy)
    rng = np.random.default_rng(2)
    scenes = []
    for _ in range(14):
        spec = random_scene(rng)
        scenes.append(SimpleNamespace(objects=perceive_synthetic(spec, rng), names=[o["name"] for o in spec]))
    cfg = training.TrainConfig(encoder="byte", per_scene=40, nonce_phrasing=0.3, seed=0)
    with pytest.raises(Stop):
        training.train(cfg, tmp_path, scenes=scenes, progress=False, log=lambda *_: None)
    assert seen["leave_out"] >= ins.VAL2_WORDS
    catalog_said = " || ".join(f" {' '.join(lexicon.words(t))} " for t in seen["texts"])
    texts = " || ".join(f" {' '.join(lexicon.words(t))} " for t in seen["samples"])
    assert len(seen["samples"]) > 400
    for w in ins.VAL2_WORDS:
        bare = " ".join(lexicon.words(w.removeprefix("the ")))
        assert f" {bare} " not in catalog_said and f" {bare} " not in texts, w
    new_phrasing_words = _val2_words() - SHARED_FUNCTION_WORDS
    assert not new_phrasing_words & set(texts.split()), sorted(new_phrasing_words & set(texts.split()))


def test_val2_samples_say_val2_words_and_keep_their_labels():
    samples = _samples("val2", 600, 4)
    texts = " || ".join(f" {' '.join(lexicon.words(s.text))} " for s in samples)
    for phrasing in ins.TEMPLATES["val2"] + ins.NO_DEST_TEMPLATES["val2"]:     # every template is drawn
        longest = max(lexicon.words(re.sub(r"\{[a-z]+\}", " ", phrasing)), key=len)
        assert f" {longest} " in texts, phrasing
    assert sum(any(f" {' '.join(lexicon.words(w.removeprefix('the ')))} " in f" {' '.join(lexicon.words(s.text))} "
                   for w in ins.VAL2_WORDS) for s in samples) > 200
    assert " back " in texts and " front " in texts and " guy " in texts
    for s in samples:
        assert s.kind == "absent" or (s.entries and all(s.names[i] in s.entries for i in s.referents))


def test_every_val2_box_phrasing_is_read_by_the_lexicon():
    """Like the held-out ones (test_grounding_lexicon.py): every val2 box phrasing, box and vertical word parses to
    its box, leaves no stray box or side word, and the boxes of generated val2 clear instructions are read."""
    for template, box in itertools.product(ins.BOX_PHRASES["val2"], BOXES):
        v, h = box.split("_")
        for vert in ins.VERT[v]:
            text = f"put the red cube in {template.format(v=vert, h=h, vb=v, vf=ins.FAR_NEAR[v])} pronto"
            assert lexicon.parse_box(text) == box, text
            assert not set(lexicon.without_boxes(text)) & (set(lexicon.VERTICAL) | set(lexicon.HORIZONTAL)), text
            assert lexicon.side(text) is None, text
    wrong = []
    for s in _samples("val2", 600, 11, "clear"):
        said = {b for _, b in lexicon.box_mentions(s.text)}
        if s.destination not in said or said - {s.destination, s.location}:
            wrong.append(s.text)
    assert not wrong, wrong


def test_the_symbolic_baseline_reads_val2_words_from_the_catalog():
    sym = SymbolicGrounder()
    catalog = load_catalog()
    for w in ("canister", "the toy that quacks", "plastic cube", "the cup you sip from"):
        want = {n for n, e in catalog.items() if w in (*e.synonyms, *e.descriptions)}
        assert sym.parse(f"{w} is supposed to live in the back left")["entries"] == want, w
    assert sym.parse("the tan guy nestled in the front right pocket")["location"] is None   # no rule for "nestled"


class NamingGrounder:
    """Splits the instruction between two objects; answers "the <phrase>" for any catalog phrase by the catalog
    (so a dialogue that named objects with a val2 word would find it here). Records what it was asked."""

    def __init__(self, names, instruction, pair):
        self.names, self.instruction, self.pair, self.asked = names, instruction, pair, []
        self.catalog = load_catalog()

    def ground_batch(self, texts, object_lists):
        out = []
        for text, objects in zip(texts, object_lists, strict=True):
            self.asked.append(text)
            probs = np.zeros(len(objects) + 1)
            if text == self.instruction:
                probs[list(self.pair)] = 0.5
            else:
                phrase = text.removeprefix("the ")
                fits = [i for i, n in enumerate(self.names)
                        if phrase in (*self.catalog[n].synonyms, *(d.removeprefix("the ")
                                                                    for d in self.catalog[n].descriptions))]
                probs[fits or [len(objects)]] = 1.0
                probs /= probs.sum()
            out.append(Grounding(probs, np.array([0.0, 0.0, 0.0, 1.0, 0.0])))
        return out

    def ground(self, text, objects):
        return self.ground_batch([text], [objects])[0]


@pytest.mark.parametrize("instruction,pair", [("the stuffy is supposed to live in the front right cubby", (0, 1)),
                                              ("how about dumping the canister into the back left?", (2, 3))])
def test_the_robot_names_objects_with_training_words_whatever_the_person_said(instruction, pair):
    """The robot's own questions name objects with its fixed training nouns (dialogue.NOUNS), never with a word of
    a validation or held-out split, so adding val2 words to the catalog changes no question any bench hears."""
    assert all(ins.word_split(n) == "train" for n in NOUNS)
    spec = [{"name": "teddy_bear", "box": "top_left", "xy": [0.0, 0.0]},
            {"name": "teddy_bear", "box": "bottom_right", "xy": [0.0, 0.0]},
            {"name": "red_cylinder", "box": "top_right", "xy": [0.0, 0.0]},
            {"name": "red_cylinder", "box": "bottom_left", "xy": [0.0, 0.0]}]
    objects = perceive_synthetic(spec, np.random.default_rng(0))
    g = NamingGrounder([o["name"] for o in spec], instruction, pair)
    reply = Dialogue(g, objects).start(instruction)
    assert reply.status == "question" and set(reply.candidates) == set(pair)
    said = " " + " ".join(lexicon.words(reply.text)) + " "
    unseen = [w for e in load_catalog().values() for w in (*e.synonyms, *e.descriptions)
              if ins.word_split(w) != "train"]
    assert not [w for w in unseen if f" {' '.join(lexicon.words(w.removeprefix('the ')))} " in said], reply.text
    assert {"teddy bear" if pair == (0, 1) else "cylinder"} <= {n for n in NOUNS if f" {n} " in said}, reply.text
    own = [t for t in g.asked if t != instruction]
    assert own and set(own) <= {f"the {n}" for n in NOUNS}, own
