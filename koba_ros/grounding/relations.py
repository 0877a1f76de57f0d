"""Relations to a landmark ("the cube to the left of the duck"), read by composition.

A model never trained on relations reads "the cube to the left of the duck" as a bag of words and often picks the
duck or the wrong cube (session 27: the default ensemble acts wrongly on 26 % of them). A relation is two noun phrases
and a geometric test, so it is read in parts, each by the grounder the robot already has:
- `parse` splits the words into the instruction without the relation ("put the cube in the top right box"), the
  landmark's words ("the duck") and the side ("left"; None for "next to the duck": either side);
- the grounder reads the rest (which objects fit "the cube", and the box) and the landmark (which object is "the duck");
- `compose` turns them into one distribution over the objects: the object meant is the one nearest the landmark on
  the side said, among those the rest's words fit.

With fit(i) the degree to which the rest's words fit object i (its probability against the best's, see `fits`) and
on(i) whether i is on the side said (1 beyond SIDE_GAP_PX, the margin at which the generator says a side; 1/2 on that
side by less, in front of or behind the landmark, where a person may or may not say so; 0 on the other side), q(i) =
on(i) fit(i) is the chance that i is an object of the words on that side of landmark l, in l's box. Objects are taken
by distance from l, and i is the one meant with weight q(i) prod_j (1 - q(j)) over the objects j clearly nearer (by
more than SIDE_GAP_PX): objects about as near do not rule each other out, so they share the mass and the robot asks.
The weights share the chance that some object there fits, 1 - prod (1 - q); summed over landmarks weighted by p(l).
What no object on that side takes (no look-alike there) falls back on the rest's own distribution.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from koba_ros.grounding import lexicon
from koba_ros.grounding.instructions import SIDE_GAP_PX

if TYPE_CHECKING:
    from koba_ros.grounding.grounder import Grounding
    from koba_ros.perception.objects import PerceivedObject

SIDE_WORDS = ("left", "right")
# Words before a side that belong to the relation ("the cube that is just to the left of ..."), walked back over.
LEADS = {"the", "to", "on", "at", "just", "immediately", "directly", "more", "further", "farther", "slightly", "a",
         "bit", "little", "somewhat", "over", "off", "toward", "towards", "that", "is", "which", "sits", "sitting",
         "standing", "lying", "placed", "located", "its", "their", "of"}
# Words that end a landmark's noun phrase ("... of the duck in the top left box", "... of the duck and put it").
LANDMARK_ENDS = {"in", "into", "inside", "onto", "on", "to", "at", "from", "and", "then", "please", "toward",
                 "towards", "over", "which", "that", "is", "are", "goes", "go", "belongs", "needs", "should", "must",
                 "ends", "up", "down", "thanks", "thank", "cheers", "pronto", "now", "away", "for", "with", "where",
                 "straight", "here", "there"}
# "right" after a landmark is the adverb before these ("... of the duck right away", "... right into the box").
PLACE_AFTER_RIGHT = {"into", "in", "to", "onto", "inside", "over"}
RIGHT_AS_ADVERB_BEFORE = lexicon.RIGHT_AS_ADVERB_BEFORE | PLACE_AFTER_RIGHT
# Words that put the object beside a landmark, with the side said after it or not at all ("next to the duck").
BESIDE = {("beside",), ("flanking",), ("alongside",), ("near",), ("next", "to"), ("close", "to")}
# Prepositions before a possessive landmark: "on the duck's left", "to the duck's right".
POSSESSIVE_LEADS = {"on", "to", "at", "by", "from"}
MAX_LANDMARK_WORDS = 6
NOT_A_LANDMARK = lexicon.NOT_A_LANDMARK   # "to the left of the others" is an extreme, not a relation
# Places that are no object ("near the front", "next to the edge", "close to you"): no landmark.
PLACES = {"front", "back", "edge", "edges", "middle", "centre", "center", "camera", "you", "me", "us", "table", "wall",
          "end", "robot", "side", "corner", "rim", "border", "top", "bottom", "window", "door", "viewer", "here",
          "there", "arm", "gripper"}
DETERMINERS = {"the", "a", "an", "that", "this", "my", "your", "our", "its"}


@dataclass(frozen=True)
class Relation:
    rest: str             # the words without the relation: "put the cube in the top right box"
    landmark: str         # "the duck"
    side: str | None      # "left" | "right" | None (either side: "next to the duck")


def parse(text: str) -> Relation | None:
    """The relation the words say, or None. Shapes: "<side> [side] of|than LANDMARK" ("to the left of the duck",
    "left of the duck", "more to the right than the mug"); "LANDMARK's <side>" ("on the duck's left"); "beside /
    flanking / alongside / near / next to / close to LANDMARK [on|to its|the <side> [side]]". Box names are never a
    side or a landmark ("in the top left box"); "the others", "the rest" are no landmark (an extreme). Not a
    relation: a place that is no object ("near the front", "close to you"), nor one right after a box name, which
    says where the object goes ("put the cube in the top right box next to the domino")."""
    tokens = lexicon.words(text)
    spans = lexicon.box_spans(text)
    in_box = {k for a, b, _ in spans for k in range(a, b + 1)}
    box_ends = {b for _, b, _ in spans}
    for start, end, landmark, side in _shapes(tokens, in_box):
        if not set(landmark) - DETERMINERS <= PLACES and not _after_a_box(tokens, start, box_ends):
            return _relation(tokens, start, end, landmark, side)
    return None


def _shapes(tokens: list[str], in_box: set[int]):
    """Every (start, end, landmark words, side) a relation's shape matches, in order of the words."""
    for k, word in enumerate(tokens):
        if k in in_box:
            continue
        if word in SIDE_WORDS:
            end = _after_side(tokens, k)
            if tokens[end:end + 1] in (["of"], ["than"]):
                found = _landmark(tokens, end + 1, in_box)
                if found:
                    yield _walk_back(tokens, k), found[1], found[0], word
            if k >= 2 and tokens[k - 1] == "s":   # "on the duck's left"
                lm_end = k - 1
                start = lm_end
                while start > 0 and tokens[start - 1] not in POSSESSIVE_LEADS and lm_end - start < MAX_LANDMARK_WORDS \
                        and start - 1 not in in_box:
                    start -= 1
                landmark = tokens[start:lm_end]
                if landmark and not set(landmark) & NOT_A_LANDMARK and start > 0 \
                        and tokens[start - 1] in POSSESSIVE_LEADS:
                    yield _walk_back(tokens, start), end, landmark, word
        for phrase in BESIDE:
            if tuple(tokens[k:k + len(phrase)]) == phrase:
                found = _landmark(tokens, k + len(phrase), in_box)
                if found:
                    landmark, stop = found
                    side, end = _side_after(tokens, stop, in_box)
                    yield _walk_back(tokens, k), end, landmark, side


def _after_a_box(tokens: list[str], start: int, box_ends: set[int]) -> bool:
    """Does the relation follow a box name ("in the top right box next to ...")? Then it places the object there."""
    k = start - 1
    while k >= 0 and tokens[k] in lexicon.BOX_NOUNS:
        k -= 1
    return k in box_ends


def _after_side(tokens: list[str], k: int) -> int:
    """The index after "left", "left side", "left hand side", "left-hand side"."""
    end = k + 1
    if tokens[end:end + 2] == ["hand", "side"]:
        return end + 2
    if tokens[end:end + 1] in (["side"], ["hand"]):
        return end + 1
    return end


def _walk_back(tokens: list[str], k: int) -> int:
    """The first index of the relation that ends the object's noun phrase: the lead words before `k`."""
    while k > 1 and tokens[k - 1] in LEADS:
        k -= 1
    return k


def _landmark(tokens: list[str], start: int, in_box: set[int]) -> tuple[list[str], int] | None:
    """The landmark's words from `start` to the first word that ends them (or a box name), and where they stop."""
    stop = start
    while stop < len(tokens) and stop not in in_box and tokens[stop] not in LANDMARK_ENDS \
            and stop - start < MAX_LANDMARK_WORDS and not _adverb_right(tokens, stop):
        stop += 1
    landmark = tokens[start:stop]
    if not [t for t in landmark if t not in ("the", "a", "an", "that", "this")] or set(landmark) & NOT_A_LANDMARK:
        return None
    return landmark, stop


def _adverb_right(tokens: list[str], k: int) -> bool:
    return tokens[k] == "right" and (k + 1 == len(tokens) or tokens[k + 1] in RIGHT_AS_ADVERB_BEFORE)


def _side_after(tokens: list[str], k: int, in_box: set[int]) -> tuple[str | None, int]:
    """"on its left side", "to the right" right after a landmark: (the side, the index after it); else (None, k)."""
    if tokens[k:k + 1] in (["on"], ["to"]):
        j = k + 1 + (tokens[k + 1:k + 2] in (["its"], ["the"], ["their"]))
        if j < len(tokens) and j not in in_box and tokens[j] in SIDE_WORDS:
            return tokens[j], _after_side(tokens, j)
    return None, k


def _relation(tokens: list[str], start: int, end: int, landmark: list[str], side: str | None) -> Relation:
    if tokens[end:end + 1] == ["right"] and tokens[end + 1:end + 2] and tokens[end + 1] in PLACE_AFTER_RIGHT:
        end += 1   # "... of the duck right into the box": emphasis, not a side, and not part of the rest's words
    rest = " ".join(tokens[:start] + tokens[end:])
    return Relation(rest=rest, landmark=" ".join(landmark), side=side)


def fits(object_probs: np.ndarray, fit_ratio: float) -> np.ndarray:
    """How well the words fit each object, in [0, 1]: its probability against fit_ratio of the best's, capped at 1.
    The grounder shares its probability among the objects the words fit (sharply, on wording it knows), so the
    best is not the only one that fits: every object within fit_ratio of it fits fully."""
    top = float(object_probs.max()) if object_probs.size else 0.0
    if top <= 0:
        return np.zeros_like(object_probs)
    return np.minimum(1.0, object_probs / (fit_ratio * top))


def compose(rest: Grounding, landmark: Grounding, objects: list[PerceivedObject], side: str | None,
            fit_ratio: float, words_fit: set[int] = frozenset()) -> Grounding:
    """One distribution over the objects (and "none of them") from the rest's words and the landmark's, as the module
    docstring says; the destination is the rest's. "None of them" keeps the rest's probability. `words_fit`: objects
    the rest's words fit by what can be checked (the dialogue's kind and colour rules), which fit fully whatever the
    model's probability (a sharp model gives a look-alike p ~ 0). With a side, distance is along the image's x (as
    the generator measures it); "next to" without one, in the image plane."""
    n = len(objects)
    obj = rest.target_probs[:n]
    none = float(rest.target_probs[n])
    fit = fits(obj, fit_ratio)
    fit[[i for i in words_fit if 0 <= i < n]] = 1.0
    p_landmark = landmark.target_probs[:n] / max(float(landmark.target_probs[:n].sum()), 1e-12)
    centre = np.array([(o.bbox[0] + o.bbox[2] / 2, o.bbox[1] + o.bbox[3] / 2) for o in objects], dtype=float)
    mass, unmatched = np.zeros(n), 0.0
    for lm in np.flatnonzero(p_landmark > 1e-4):
        offset = centre - centre[lm]
        dist = np.abs(offset[:, 0]) if side else np.hypot(offset[:, 0], offset[:, 1])
        q = np.array([fit[i] * _on_side(offset[i, 0], side) if i != lm and objects[i].box == objects[lm].box
                      else 0.0 for i in range(n)])
        weight = np.array([q[i] * np.prod(1.0 - q[dist < dist[i] - SIDE_GAP_PX]) for i in range(n)])
        matched = 1.0 - float(np.prod(1.0 - q))
        if weight.sum() > 0:
            mass += p_landmark[lm] * matched * weight / weight.sum()
        unmatched += p_landmark[lm] * (1.0 - matched)
    # What no object beside a landmark takes goes back to the rest's own reading (session 28 measured "none of them"
    # and the rest's reading without the landmarks instead: neither passed its rule; see
    # docs/grounding/session28_relation_composition_rules.md).
    spread = obj / obj.sum() if obj.sum() > 0 else np.full(n, 1.0 / max(n, 1))
    target = (1.0 - none) * (mass + unmatched * spread)
    return dataclasses.replace(rest, target_probs=np.append(target, none))


def _on_side(dx: float, side: str | None) -> float:
    """1 when an object dx pixels right of the landmark is on the side said by more than SIDE_GAP_PX, 1/2 when it is
    on that side by less (in front of or behind the landmark: a person may or may not call it so), 0 on the other
    side; 1 for either side."""
    if side is None:
        return 1.0
    along = -dx if side == "left" else dx
    return 1.0 if along > SIDE_GAP_PX else 0.5 if along > 0 else 0.0


def look_alike_landmarks(landmark: Grounding, alike: set[int], objects: list[PerceivedObject]) -> Grounding:
    """The landmark reading with each object of `alike` (those the landmark's words name by what can be checked) in
    the pick's box at least as likely as the grounder's pick, when the pick is one of them. A sharp reading of "the
    plastic cube" puts p ~ 1 on one of two plastic cubes, and the composition would then act on the object beside
    that one, where the words say either (session 29). A pick the check disagrees with is left as the grounder read
    it, and so are look-alikes in other boxes (the object is looked for beside a landmark in its own box)."""
    p = landmark.target_probs.copy()
    n = len(p) - 1
    if n <= 0:
        return landmark
    pick = int(np.argmax(p[:n]))
    same_box = [i for i in alike if 0 <= i < n and objects[i].box == objects[pick].box]
    if pick not in same_box:
        return landmark
    p[same_box] = np.maximum(p[same_box], p[pick])
    return dataclasses.replace(landmark, target_probs=p)


def read(grounder, text: str, objects: list[PerceivedObject], fit_ratio: float = 0.1,
         words_fit: Callable[[str], set[int]] | None = None,
         landmark_fit: Callable[[str], set[int]] | None = None) -> tuple[Grounding, bool]:
    """The grounder's reading of the words, composed as above when they relate the object to a landmark, and whether
    it was. A landmark the grounder finds in none of the objects ("none of them" most likely) leaves the whole words'
    reading. `words_fit(rest)`: see `compose`; `landmark_fit(landmark)`: see `look_alike_landmarks`."""
    relation = parse(text)
    if relation is None or not objects:
        return grounder.ground(text, objects), False
    whole, rest, landmark = grounder.ground_batch([text, relation.rest or ".", relation.landmark], [objects] * 3)
    if landmark.none_prob >= 0.5:
        return whole, False
    fitting = words_fit(relation.rest) if words_fit is not None else frozenset()
    if landmark_fit is not None:
        landmark = look_alike_landmarks(landmark, landmark_fit(relation.landmark), objects)
    return compose(rest, landmark, objects, relation.side, fit_ratio, fitting), True

