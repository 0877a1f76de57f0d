"""The small closed vocabulary the dialogue needs: box names, colours, yes/no, ordinals, cancel.

The learned model reads unconstrained instructions; this keyword lexicon is only for
(a) understanding short answers to the robot's own questions ("the top left one", "the first",
"no", "cancel") and (b) the symbolic baseline the learned model is measured against.
"""
from __future__ import annotations

import re

import numpy as np

from koba_ros.sim.catalog import BOXES

VERTICAL = {"top": "top", "upper": "top", "back": "top", "bottom": "bottom", "lower": "bottom", "front": "bottom"}
HORIZONTAL = {"left": "left", "right": "right"}
CANCEL = ("cancel", "stop", "never mind", "nevermind", "forget it", "abort", "halt", "quit")
YES = ("yes", "yeah", "yep", "sure", "correct", "right one", "that one", "exactly", "ok", "okay", "affirmative")
NO = ("no", "nope", "not that", "wrong", "neither", "nah")
ORDINALS = {"first": 0, "former": 0, "1st": 0, "second": 1, "latter": -1, "2nd": 1, "third": 2, "3rd": 2, "last": -1}

# Named colours for describing an object from its mean colour (the words the catalog uses).
PALETTE = {
    "red": (0.82, 0.10, 0.10), "green": (0.10, 0.68, 0.15), "blue": (0.10, 0.25, 0.88), "yellow": (0.95, 0.83, 0.10),
    "white": (0.93, 0.93, 0.91), "brown": (0.52, 0.32, 0.15), "tan": (0.80, 0.66, 0.46), "black": (0.05, 0.05, 0.05),
}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def has_phrase(text: str, phrases) -> bool:
    padded = " " + " ".join(words(text)) + " "
    return any(f" {p} " in padded for p in phrases)


# Words that may sit between the two halves of a box name: "the top box on the right", "the right-hand box in
# the top row", "the left box at the top". Nothing else may, so "the cube left of the duck in the top box" is not one.
BOX_FILLER = {"box", "bin", "the", "on", "at", "in", "hand", "one", "container", "tray", "corner", "side"}
BOX_GAP = 4   # at most this many filler words between the halves
# A horizontal half said before its vertical half belongs to a box noun: "the left box at the top", "the right-hand
# bin in the top row", "the box on the left at the top". Otherwise it is the object's side: "the cube on the left in
# the top box on the right" names the top right box, not the top left one.
BOX_NOUNS = {"box", "bin", "container", "tray", "hand", "one", "corner", "compartment", "section", "area", "slot",
             "spot"}


# "right" before these is the adverb ("right away", "right now": at once), not the side.
RIGHT_AS_ADVERB_BEFORE = {"away", "now", "then", "here", "there", "back", "off"}


def adverb_right(tokens: list[str], k: int) -> bool:
    """Is tokens[k] the adverb "right" ("right away"), neither a side nor half of a box name?"""
    return tokens[k] == "right" and tokens[k + 1:k + 2] != [] and tokens[k + 1] in RIGHT_AS_ADVERB_BEFORE


def box_spans(text: str) -> list[tuple[int, int, str]]:
    """Every box named in the text as (first word, last word, box name), in order of the first word.

    Adjacent halves pair first ("top left", "upper far left"); a half left over pairs with the nearest free half
    of the other kind across filler words only, in either order ("the top box on the right", "the left box at the
    top", "the right-hand box in the top row" -- the trailing "row" belongs to the name)."""
    tokens = words(text)
    used, spans = set(), []
    for i, tok in enumerate(tokens):           # "top left", "top - left", "upper far left"
        if tok in VERTICAL:
            for j in (i + 1, i + 2):
                # one word between only if it qualifies the side ("upper far left"), not "the bottom row right now"
                if j < len(tokens) and tokens[j] in HORIZONTAL and j not in used and \
                        (j == i + 1 or tokens[i + 1] in {"far", "very"}):
                    used.update((i, j))
                    spans.append((i, j, f"{tok}_{tokens[j]}"))
                    break
    for i, tok in enumerate(tokens):           # halves apart, with only filler words between
        # A "right" apart from its vertical half may be the adverb: "the top box right away" is the top box, as side()
        # reads it ("the top right now" still pairs above).
        if i in used or tok not in VERTICAL and tok not in HORIZONTAL or adverb_right(tokens, i):
            continue
        other = HORIZONTAL if tok in VERTICAL else VERTICAL
        for gap in range(1, BOX_GAP + 2):
            found = [j for j in (i + gap, i - gap) if 0 <= j < len(tokens) and j not in used and tokens[j] in other
                     and not adverb_right(tokens, j)
                     and all(tokens[k] in BOX_FILLER for k in range(min(i, j) + 1, max(i, j)))
                     and (tokens[min(i, j)] in VERTICAL or _half_of_a_box(tokens, min(i, j)))]
            if found:
                j = found[0]
                v, h = (tok, tokens[j]) if tok in VERTICAL else (tokens[j], tok)
                end = max(i, j) + (max(i, j) + 1 < len(tokens) and tokens[max(i, j) + 1] == "row")
                used.update((i, j))
                spans.append((min(i, j), end, f"{v}_{h}"))
                break
    return sorted((a, b, f"{VERTICAL[name.split('_')[0]]}_{HORIZONTAL[name.split('_')[1]]}") for a, b, name in spans)


def _half_of_a_box(tokens: list[str], h: int) -> bool:
    """Whether the horizontal word at h names a box: before a box noun ("left box") or after one ("box on the left")."""
    return tokens[h + 1:h + 2] in [[w] for w in BOX_NOUNS] or \
        (h >= 3 and tokens[h - 3] in BOX_NOUNS and tokens[h - 1] == "the" and tokens[h - 2] in BOX_FILLER | {"to"})


def box_mentions(text: str) -> list[tuple[int, str]]:
    """Every box named in the text as (word position, box name), in order; "top left", "lower-right corner"..."""
    return [(a, box) for a, _, box in box_spans(text)]


def parse_box(text: str) -> str | None:
    """The last box the text names, or None."""
    mentions = box_mentions(text)
    return mentions[-1][1] if mentions else None


def without_boxes(text: str) -> list[str]:
    """The words of the text with every box name ("top left", "the left box at the top") taken out."""
    tokens = words(text)
    drop = {k for a, b, _ in box_spans(text) for k in range(a, b + 1)}
    return [t for k, t in enumerate(tokens) if k not in drop]


def side(text: str) -> str | None:
    """"left"/"right" when the text says which side (box names and the adverb "right away" aside), else None."""
    kept = without_boxes(text)
    tokens = {t for k, t in enumerate(kept) if not adverb_right(kept, k)}
    if tokens & {"left", "leftmost"} and not tokens & {"right", "rightmost"}:
        return "left"
    if tokens & {"right", "rightmost"} and not tokens & {"left", "leftmost"}:
        return "right"
    return None


NOT_A_LANDMARK = frozenset({"others", "rest", "them", "all"})   # "to the left of the others" is an extreme


def ordinal(text: str) -> int | None:
    for tok in words(text):
        if tok in ORDINALS:
            return ORDINALS[tok]
    return None


# Words that rule something out ("not the red one", "don't put...", "everything except the duck"). "if you don't
# mind" and "can't you / won't you" are polite, not negations.
NEGATION = re.compile(r"(?:\b(?:not|never|except|excluding|other than|apart from|rather than|instead of)\b|n['’]t\b|"
                      r"\b(?:dont|doesnt|didnt|isnt|arent|cant|wont|shouldnt|wouldnt|couldnt)\b)(?! you\b)")
POLITE_NEGATION = re.compile(r"\b(?:if you )?(?:don['’]?t|do not) (?:mind|forget(?: to)?|worry)\b")


def split_negation(text: str) -> tuple[str, str]:
    """(what the text says, what it rules out): in each clause (split at commas, semicolons and full stops), the words
    from the first negation on are ruled out. "the blue one, not the red one" -> ("the blue one", "the red one");
    "no, not the first one" -> ("no", "the first one"); no negation -> (text, "")."""
    said, ruled_out = [], []
    for clause in re.split(r"[,;.!?]", POLITE_NEGATION.sub(" ", text.lower())):
        m = NEGATION.search(clause)
        said.append(clause[:m.start()] if m else clause)
        if m:
            ruled_out.append(clause[m.end():])
    return " ".join(" ".join(said).split()), " ".join(" ".join(ruled_out).split())


def negated(text: str) -> bool:
    """Does the text rule something out ("the cube that is not red", "don't put the duck...")?"""
    return NEGATION.search(POLITE_NEGATION.sub(" ", text.lower())) is not None


def is_cancel(text: str) -> bool:
    return has_phrase(text, CANCEL)


def yes_no(text: str) -> bool | None:
    if has_phrase(text, NO):
        return False
    if has_phrase(text, YES):
        return True
    return None


def box_words(box: str) -> str:
    """top_left -> "top left"."""
    return box.replace("_", " ")


def colour_name(rgb) -> str:
    """The palette colour nearest to a mean RGB (0..1)."""
    rgb = np.asarray(rgb, dtype=float)
    names = list(PALETTE)
    # Compare chromaticity and brightness separately: shading darkens, it does not change hue.
    table = np.array([PALETTE[n] for n in names])
    norm = lambda v: v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-6)  # noqa: E731
    chroma = np.linalg.norm(norm(table) - norm(rgb), axis=-1)
    bright = np.abs(table.mean(-1) - rgb.mean())
    return names[int(np.argmin(chroma + 0.3 * bright))]


assert set(b.replace("_", " ").split()[0] for b in BOXES) <= set(VERTICAL.values())
