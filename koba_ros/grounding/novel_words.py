"""Made-up object words in training, so the catalog head learns to read the catalog (session 3).

The catalog head should find a word that training never said ("can") through the catalog text that lists it
("the red can"). Trained only on the training words, the model can learn word -> entry in its own weights and
never needs the catalog texts: on held-out phrasings "can" was the top-1 target 75 times in 109 and made half of
the top-1 errors and of the absent objects moved. Here a fraction of the training instructions name their object
with a made-up word ("put the red dax in the top left box"), listed in that batch's catalog under exactly the
entries the replaced noun fits ("the red dax" -> red_cylinder). The same made-up word names different entries in
different samples, so the only way to get these right is to match the words against the catalog texts -- the
episodic set-up of matching networks (Vinyals et al., NeurIPS 2016), with nonce words as in word-learning tests.
Made-up words are built from syllables and never equal a word of any split's catalog or phrasings.

Homographs (session 4): the held-out catalog word "can" is also a modal verb that the training phrasings use as
filler ("can you put ..."), and the default model had learned to look past it: its target attention put 0.07 of
its mass on "can" vs 0.23-0.72 on each other held-out object word, and the catalog head gave the right entries
0.55 (0.85-1.0 for the others but "building block") (docs/grounding.md, "Session 4: model"). So a share of the
renamed samples name their object with a word that the *training* phrasings use in another role ("put the red
put in the top left box", "okay, pick the blue place"), listed in the batch's catalog like a made-up word: the
model has to learn that a catalog definition beats a word's usual role. Homographs come only from the training
phrasings and are no word of the held-out or validation phrasings, no catalog word and no box or
object-reference word (`homograph_words`).
"""
from __future__ import annotations

import dataclasses
import re
from itertools import chain

import numpy as np

from koba_ros.grounding.catalog_phrases import CatalogPhrases, _with_colour
from koba_ros.grounding.instructions import COLOURS, Sample, word_split

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "bl", "gr", "st", "tr", "sn", "kr",
          "pl", "dr", "fl", "sk")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("", "x", "k", "p", "t", "n", "m", "l", "sh", "ck", "rp")
CONTAINER_WORDS = {"box", "bin", "container", "tray", "compartment", "section", "area", "slot", "spot", "corner"}


def pseudo_words(n: int, seed: int, avoid: set[str]) -> list[str]:
    """n distinct made-up words of two syllables ("blicket"-like), none in `avoid`."""
    rng, out = np.random.default_rng(seed), []
    seen = set(avoid)
    while len(out) < n:
        w = "".join(str(rng.choice(ONSETS)) + str(rng.choice(VOWELS)) for _ in range(2)) + str(rng.choice(CODAS))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def rename(sample: Sample, word: str, catalog: dict) -> tuple[Sample, dict[str, str]] | None:
    """The sample with its object noun replaced by `word`, and the catalog phrases {text: entry} that define the
    word as a synonym of exactly the entries the noun fits; None when the noun is not a plain training synonym
    (a description, a generic "one", a synonym that names a colour or a container) or is not found exactly once."""
    if not sample.entries:
        return None
    text = sample.text
    for syn in sorted({s for n in sample.entries for s in catalog[n].synonyms}, key=len, reverse=True):
        if word_split(syn) != "train" or set(syn.split()) & (set(COLOURS) | CONTAINER_WORDS):
            continue
        hits = list(re.finditer(rf"\bthe ((?:{'|'.join(COLOURS)}) )?{re.escape(syn)}\b", text, flags=re.IGNORECASE))
        if len(hits) != 1:
            continue
        colour = (hits[0].group(1) or "").strip().lower()
        fits = sorted(n for n, e in catalog.items() if syn in e.synonyms and (not colour or e.color == colour))
        if fits != sorted(sample.entries):
            return None
        start, end = hits[0].span()
        new_text = text[:start] + text[start:end][:-len(syn)] + word + text[end:]
        phrases = {_with_colour(catalog[n].color, word): n for n in sample.entries}
        return dataclasses.replace(sample, text=new_text), phrases
    return None


def with_phrases(base: CatalogPhrases, extra: dict[str, str]) -> CatalogPhrases:
    """The catalog texts plus extra {text: entry} phrases (entries must be the base's)."""
    index = {n: k for k, n in enumerate(base.entries)}
    texts = [t for t in extra if t not in base.texts]
    entry_of = base.entry_of + tuple(index[extra[t]] for t in texts)
    return CatalogPhrases(base.entries, base.texts + tuple(texts), entry_of)


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", t.lower()))}


def homograph_words(catalog: dict) -> list[str]:
    """Words of the training command, politeness and location phrasings that no held-out or validation phrasing
    or word uses, that name nothing in the catalog, a box or an object reference ("one", "leftmost"), and have at
    least three letters (so not "the", "up"): "put", "okay", "need", "which", ..."""
    from koba_ros.grounding import instructions as ins

    flat = (ins.TEMPLATES, ins.NO_DEST_TEMPLATES, ins.POLITE, ins.TAIL, ins.BOX_PHRASES, ins.LOCATION, ins.GENERIC)
    by_side = (ins.EXTREME, ins.RELATION)        # {split: {side: [phrasings]}}
    said = _words(t for table in flat[:4] + flat[5:6] for t in table["train"])
    held = _words(chain((t for table in flat for split in ins.UNSEEN_SPLITS for t in table[split]),
                        (t for table in by_side for split in ins.UNSEEN_SPLITS for ts in table[split].values()
                         for t in ts),
                        ins.UNSEEN_WORDS, ins.ANSWER_BOX, ins.FAR_NEAR.values()))
    references = _words(chain((t for table in (ins.BOX_PHRASES, ins.GENERIC) for ts in table.values() for t in ts),
                              (t for table in by_side for split in table.values() for ts in split.values()
                               for t in ts)))
    named = _words(x for e in catalog.values() for x in (*e.synonyms, *e.descriptions, e.color, e.shape))
    return sorted(w for w in said - held - references - named - CONTAINER_WORDS if len(w) >= 3)


class NovelWords:
    """Which training samples say a made-up word, and the catalog phrases each batch needs for them.

    `homographs`: the share of renamed samples that take a word of `homograph_words` instead of a made-up one,
    half of them (when it has one) a homograph their own text already uses in its usual role."""

    def __init__(self, samples: list[Sample], catalog: dict, fraction: float, seed: int, avoid: set[str],
                 pool: int = 400, homographs: float = 0.0):
        rng = np.random.default_rng(seed)
        words = pseudo_words(pool, seed, avoid)
        common = homograph_words(catalog) if homographs > 0 else []
        self.renamed: dict[int, tuple[Sample, dict[str, str], str]] = {}
        for i, s in enumerate(samples):
            if rng.random() < fraction:
                word = words[int(rng.integers(len(words)))]
                if common and rng.random() < homographs:
                    own = [w for w in common if re.search(rf"\b{w}\b", s.text, flags=re.IGNORECASE)]
                    choices = own if own and rng.random() < 0.5 else common
                    word = choices[int(rng.integers(len(choices)))]
                done = rename(s, word, catalog)
                if done is not None:
                    self.renamed[i] = (*done, word)

    def texts(self) -> list[str]:
        """Every renamed instruction and catalog phrase (to encode once, before training)."""
        return [t for s, phrases, _ in self.renamed.values() for t in (s.text, *phrases)]

    def batch(self, indices, samples: list[Sample]) -> tuple[list[Sample], dict[str, str]]:
        """The batch with renamed samples where a made-up word does not clash with another use of it in the
        same batch (a word must name one set of entries per catalog), and the phrases to add to the catalog."""
        out, phrases, meaning = [], {}, {}
        for i in indices:
            s = samples[i]
            if i in self.renamed:
                new, own, word = self.renamed[i]
                entries = tuple(sorted(own.values()))
                if meaning.setdefault(word, entries) == entries:
                    s = new
                    phrases.update(own)
            out.append(s)
        return out, phrases


def phrasing_vocabulary(catalog: dict) -> set[str]:
    """Every word the generator (any split) or the catalog uses, and the words of the open-vocabulary check in
    docs/grounding.md: a made-up word must be none of them."""
    from koba_ros.grounding import instructions as ins

    tables = [ins.TEMPLATES, ins.NO_DEST_TEMPLATES, ins.POLITE, ins.TAIL, ins.BOX_PHRASES, ins.LOCATION, ins.GENERIC,
              *ins.EXTREME.values(), *ins.RELATION.values()]
    texts = [t for table in tables for split in table.values() for t in split]
    texts += [*ins.UNSEEN_WORDS, *ins.ANSWER_BOX, *ins.FAR_NEAR.values(), "gizmo puck widget thingamajig orb"]
    for e in catalog.values():
        texts += [*e.synonyms, *e.descriptions, e.color, e.shape]
    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


# Words of the training phrasings whose meaning no label depends on: the verb of a command, the noun of a box
# phrasing, the participle of a location phrasing. All are training words; made-up words replace them.
REWORDABLE = {"put", "move", "place", "pick", "goes", "take", "want", "need", "needs", "placed", "transport", "drop",
              "shift", "carry", "relocate", "get", "box", "bin", "container", "tray", "compartment", "section", "area",
              "located", "resting", "currently",
              # session 6's wider training grammar (instructions.py)
              "stow", "deposit", "pop", "stick", "toss", "slide", "push", "lay", "tuck", "pack", "deliver", "send",
              "leave", "return", "insert", "haul", "park", "reposition", "collect", "require", "crate", "basket",
              "bucket", "tub", "quadrant", "zone", "region", "drawer", "bay", "kept", "stored", "positioned", "found",
              "waiting", "standing", "stashed", "contained", "stuck", "hiding"}


class NoncePhrasing:
    """Made-up function words (session 5): with probability `fraction` a training phrasing (command template, box
    phrasing, location phrasing) has one of its REWORDABLE words replaced by a made-up word, so the model learns
    the sentence shape ("{obj} <verb> in {dest}", "{np} <participle> in {box}", "the top left <noun>") rather than
    the few verbs and nouns the training phrasings happen to use.

    Why: on the validation phrasings the default's box errors were mostly "X belongs in the top right spot" read as
    "no box said" (12 of 16), and most of its target errors picked an object outside the box a location phrase
    with an unseen participle named ("lying in", "placed in"; docs/grounding.md, "Session 5: model").
    The verb right before "{obj}" stays when "{obj} in {dest}" follows: "<verb> the cube in the top left box" is a
    destination after "put" and a location after "grab", so without its verb it would carry no label.
    Made-up words come from the same maker as the object words but never the object pool's (the first `pool`)."""

    def __init__(self, fraction: float, seed: int, avoid: set[str], pool: int = 400):
        self.fraction, self.rng = fraction, np.random.default_rng(seed + 104729)
        self.words = pseudo_words(2 * pool, seed, avoid)[pool:]

    def __call__(self, phrasing: str) -> str:
        if self.rng.random() >= self.fraction:
            return phrasing
        keep = re.search(r"(\w+) \{obj\} (over )?in \{dest\}", phrasing)
        spots = [m for m in re.finditer(r"(?<!\{)\b[a-z]+\b(?!\})", phrasing)
                 if m.group() in REWORDABLE and not (keep and m.start() == keep.start(1))]
        if not spots:
            return phrasing
        m = spots[int(self.rng.integers(len(spots)))]
        return phrasing[:m.start()] + self.words[int(self.rng.integers(len(self.words)))] + phrasing[m.end():]
