"""Made-up object words in training (novel_words.py): what gets renamed, what the batch's catalog then lists."""
import re

import numpy as np

from koba_ros.grounding import instructions as ins
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.instructions import UNSEEN_SPLITS, UNSEEN_WORDS, InstructionGenerator, Sample
from koba_ros.grounding.novel_words import (
    REWORDABLE,
    NoncePhrasing,
    NovelWords,
    homograph_words,
    phrasing_vocabulary,
    pseudo_words,
    rename,
    with_phrases,
)
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene
from koba_ros.sim.catalog import load_catalog


def _samples(n=400, seed=5, reword=None):
    rng, gen, out = np.random.default_rng(seed), InstructionGenerator("train", seed, reword), []
    while len(out) < n:
        scene = random_scene(rng)
        s = gen.generate(perceive_synthetic(scene, np.random.default_rng(int(rng.integers(1 << 30)))),
                         [o["name"] for o in scene])
        if s is not None:
            out.append(s)
    return out


def test_made_up_words_are_no_word_of_any_split_or_the_catalog():
    catalog = load_catalog()
    vocabulary = phrasing_vocabulary(catalog)
    assert {"can", "football", "corner", "furthest", "ducky", "gizmo", "duck", "put"} <= vocabulary
    words = pseudo_words(400, 0, vocabulary)
    assert len(set(words)) == 400 and not set(words) & vocabulary
    held = {w for p in UNSEEN_WORDS for w in p.split()}
    assert not set(words) & held


def test_rename_defines_the_word_for_exactly_the_entries_the_noun_fits():
    catalog = load_catalog()
    s = Sample("Put the red ball in the top left box", [], ["red_ball"], [0], "top_left", "clear", 0,
               entries=["red_ball"])
    new, phrases = rename(s, "blicket", catalog)
    assert new.text == "Put the red blicket in the top left box" and phrases == {"the red blicket": "red_ball"}
    assert new.referents == s.referents and s.text.startswith("Put the red ball")       # the original is unchanged
    plain = Sample("grab the ball", [], [], [], None, "no_box", None,
                   entries=sorted(n for n, e in catalog.items() if "ball" in e.synonyms))
    _, phrases = rename(plain, "dax", catalog)
    assert sorted(phrases.values()) == plain.entries and "the white dax" in phrases        # soccer ball is white
    # a description, a generic word or a noun that is also a container word is left alone
    assert rename(Sample("move the red one to bottom left", [], [], [], "bottom_left", "clear", None,
                         entries=[n for n, e in catalog.items() if e.color == "red"]), "dax", catalog) is None
    assert rename(Sample("put the box in the top right box", [], [], [], "top_right", "clear", None,
                         entries=[n for n, e in catalog.items() if "box" in e.synonyms]), "dax", catalog) is None


def test_renamed_samples_keep_their_labels_and_a_batch_never_gives_a_word_two_meanings():
    catalog = load_catalog()
    samples = _samples()
    novel = NovelWords(samples, catalog, fraction=1.0, seed=0, avoid=phrasing_vocabulary(catalog), pool=5)
    assert len(novel.renamed) > len(samples) // 3                    # most plain-synonym phrases can be renamed
    for i, (new, phrases, word) in novel.renamed.items():
        old = samples[i]
        assert word in new.text.lower() and word not in old.text.lower()
        assert (new.referents, new.target, new.destination, new.kind) == (old.referents, old.target,
                                                                          old.destination, old.kind)
        assert sorted(phrases.values()) == sorted(old.entries) and all(word in t for t in phrases)
    batch, extra = novel.batch(list(range(len(samples))), samples)  # 5 words for hundreds of samples: many clash
    meaning: dict[str, set] = {}
    for t, entry in extra.items():
        meaning.setdefault(t.split()[-1], set()).add(entry)
    said = [s for s in batch if any(w in s.text.lower().split() for w in meaning)]
    assert said and len(said) < len(novel.renamed)                   # clashing ones were given back their noun
    for s in said:
        word = next(w for w in meaning if w in s.text.lower().split())
        assert set(s.entries) == meaning[word]
    base = catalog_phrases(catalog)
    grown = with_phrases(base, extra)
    assert grown.texts[:len(base.texts)] == base.texts and len(grown.texts) == len(base.texts) + len(extra)
    assert all(grown.entries[grown.entry_of[grown.texts.index(t)]] == e for t, e in extra.items())


def test_homographs_come_from_training_phrasings_only_and_name_nothing_else():
    catalog = load_catalog()
    words = homograph_words(catalog)
    assert {"put", "okay", "place"} <= set(words)
    # "can" (held out), "please"/"robot"/"want" (held-out phrasings say them), "bring" (validation), "box" and
    # "left" (box names), "ball" (a catalog word), "one" (an object reference) are never homographs
    assert not {"can", "please", "robot", "want", "bring", "box", "left", "ball", "one", "the"} & set(words)
    held = {w for p in UNSEEN_WORDS for w in p.split()}
    assert not set(words) & held
    held_phrasings = []
    for table in (ins.TEMPLATES, ins.NO_DEST_TEMPLATES, ins.POLITE, ins.TAIL, ins.BOX_PHRASES, ins.LOCATION,
                  ins.GENERIC):
        held_phrasings += [t for split in UNSEEN_SPLITS for t in table[split]]
    for table in (ins.EXTREME, ins.RELATION):
        held_phrasings += [t for split in UNSEEN_SPLITS for ts in table[split].values() for t in ts]
    assert not set(words) & {w for t in held_phrasings for w in re.findall(r"[a-z]+", t.lower())}
    training = " ".join(t for table in (ins.TEMPLATES, ins.POLITE, ins.LOCATION, ins.TAIL, ins.NO_DEST_TEMPLATES)
                        for t in table["train"]).lower()
    assert all(re.search(rf"\b{w}\b", training) for w in words)


def test_homograph_renamings_keep_one_meaning_per_batch():
    catalog = load_catalog()
    samples = _samples()
    common = set(homograph_words(catalog))
    novel = NovelWords(samples, catalog, fraction=1.0, seed=0, avoid=phrasing_vocabulary(catalog), pool=5,
                       homographs=0.5)
    renamed_with = {i: word for i, (_, _, word) in novel.renamed.items()}
    homographic = [i for i, w in renamed_with.items() if w in common]
    assert len(homographic) > len(novel.renamed) // 4
    # some take a word their own text already says in its usual role ("put the red put in ...")
    assert any(len(re.findall(rf"\b{renamed_with[i]}\b", novel.renamed[i][0].text, flags=re.IGNORECASE)) > 1
               for i in homographic)
    for i in homographic:
        new, phrases, word = novel.renamed[i]
        assert sorted(phrases.values()) == sorted(samples[i].entries) and all(t.endswith(f" {word}") for t in phrases)
    batch, extra = novel.batch(list(range(len(samples))), samples)
    meaning: dict[str, set] = {}
    for t, entry in extra.items():
        meaning.setdefault(t.split()[-1], set()).add(entry)
    for k, s in enumerate(batch):   # every sample that kept its renaming agrees with the one meaning of its word
        if s is not samples[k]:
            assert set(s.entries) == meaning[renamed_with[k]]
    assert common & set(meaning) and not {t for t in extra if t in catalog_phrases(catalog).texts}


def test_nonce_phrasing_replaces_one_training_verb_or_noun_with_a_made_up_word_and_keeps_the_labels():
    catalog = load_catalog()
    vocabulary = phrasing_vocabulary(catalog)
    assert REWORDABLE <= {w for t in (*ins.TEMPLATES["train"], *ins.BOX_PHRASES["train"], *ins.LOCATION["train"])
                          for w in re.findall(r"[a-z]+", t)}                   # only training words are replaced
    always = NoncePhrasing(1.0, 0, vocabulary)
    assert not set(always.words) & set(pseudo_words(400, 0, vocabulary))       # never an object word's made-up word
    for phrasing in ("{obj} goes in {dest}", "the {v} {h} box", "{np} located in {box}"):
        new = always(phrasing)
        changed = [w for w in re.findall(r"[a-z]+", new) if w not in re.findall(r"[a-z]+", phrasing)]
        assert len(changed) == 1 and changed[0] in always.words and changed[0] not in vocabulary, new
    # "put the cube in the top left box": without "put" the box could be where the cube is; that verb stays
    assert always("put {obj} in {dest}") == "put {obj} in {dest}" and always("{np} in {box}") == "{np} in {box}"
    assert NoncePhrasing(0.0, 0, vocabulary)("move {obj} to {dest}") == "move {obj} to {dest}"
    half = NoncePhrasing(0.5, 3, vocabulary)
    plain, reworded = _samples(150, seed=3), _samples(150, seed=3, reword=half)
    assert sum(bool(set(s.text.lower().split()) & set(half.words)) for s in reworded) > 50
    for a, b in zip(plain, reworded, strict=True):    # the same draws otherwise: only the words differ
        assert (a.referents, a.destination, a.kind, a.target, a.location, a.landmark) == \
               (b.referents, b.destination, b.kind, b.target, b.location, b.landmark)
        assert len(a.text.split()) == len(b.text.split())
