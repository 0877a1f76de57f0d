"""The texts of the object catalog that the grounding model reads at inference: what each entry is called.

For every catalog entry: "the <colour> <synonym>" for each synonym (just "the <synonym>" when the synonym
already names a colour), each description, and "the <colour> <shape>". (Listing the bare "the <synonym>" as
well was measured worse on the validation phrasings: 0.740 vs 0.818 clear accuracy.) The model matches the object
phrase of an instruction against these texts (a learned match, `model.CatalogMatch`), so a word a user
adds to sim/objects/catalog.yaml is understood without retraining. Training reads the catalog without
the held-out (and validation) words, so it never sees those strings; inference reads the whole file.
"""
from __future__ import annotations

from dataclasses import dataclass

from koba_ros.errors import KobaError

COLOURS = ("red", "green", "blue", "yellow", "white", "brown", "tan", "black")


@dataclass(frozen=True)
class CatalogPhrases:
    entries: tuple[str, ...]     # catalog names, in the order the model's entry outputs use
    texts: tuple[str, ...]       # every phrase
    entry_of: tuple[int, ...]    # entry index of each phrase


def _with_colour(colour: str, word: str) -> str:
    return f"the {word}" if any(c in word.split() for c in COLOURS) else f"the {colour} {word}"


def catalog_phrases(catalog: dict, entries: tuple[str, ...] | None = None, leave_out=frozenset()) -> CatalogPhrases:
    """Phrases for these entries (default: all, in catalog order); words in `leave_out` are not listed."""
    entries = tuple(entries) if entries is not None else tuple(catalog)
    missing = [n for n in entries if n not in catalog]
    if missing:
        raise KobaError(f"the grounding model was trained with catalog entries {missing} that the catalog lacks")
    texts, entry_of = [], []
    for k, name in enumerate(entries):
        e = catalog[name]
        own = [_with_colour(e.color, s) for s in e.synonyms if s not in leave_out]
        own += [d for d in e.descriptions if d not in leave_out]
        own.append(_with_colour(e.color, e.shape))
        for t in dict.fromkeys(own):
            texts.append(t)
            entry_of.append(k)
    return CatalogPhrases(entries, tuple(texts), tuple(entry_of))
