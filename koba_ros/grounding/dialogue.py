"""Clarification dialogue: decide from calibrated probabilities whether to act, ask or refuse; ask a
question that names what tells the candidates apart; understand the answer; give up after max_turns.

Hatori et al. (ICRA 2018) ask when the top candidates score too close; here the test is on the
temperature-calibrated probability: act when the best object has p >= ask_below, refuse when "none of
them" is most likely, otherwise ask about the few objects holding most of the mass. It also asks when the
model is sure but the words fit look-alikes of its pick as well (never guess silently on an ambiguous
instruction), and checks the box when the one box named may be where the object is rather than where it goes;
the one box the words leave for the destination (the box the chosen object is in set aside) settles it, whatever the
box head read.
A sure pick must also agree with the words it can check: when the words name a kind of object from the catalog
("the can") and the pick is not one (the model's own name for it is a cube), the robot asks about the objects of
that kind (or whether it meant the pick) instead of moving it; when the words name no kind at all ("the blue item"),
any likely object of the pick's colour is a look-alike. Conversely, below the gate it acts when what the words say
that can be checked (the kind, the colour, the box they locate it in, a side within it) fits exactly one object, the
model gives it a share of the probability (it would have asked about it), and "none of them" is not plausible.
The model's noun for the pick is not the last word: the crop CNN (crop_kinds.py), which never saw the words, must not
be sure it is another kind (below crop_veto of its probability on the kinds named). The words' model can share one
confusion with certainty on unseen wording ("the green block" -> the green cylinder when no block is green).
A colour word fits the objects the camera sees nearest it or nearest what the camera sees of the objects people call
that colour (the tan jenga block looks dark orange-brown).
A box counts as said only when the words name one: the box head alone reads a box into words that name none.

An answer is read against the objects the question named (its box, side, colour, then the rest of its words
ranked by the grounder among them); "no, the ..." or an answer that fits none of them looks at the other
objects the instruction might mean, then at all of them; an answer that fits every object named answers
nothing and the question is asked again. An answer never picks an object its kind or colour words do not fit, nor one
it rules out ("not the first one"); one object left by the model's ranking alone is asked about, not moved. An
instruction that says what not to move, or names two objects, is asked for again (docs/grounding.md, Session 24).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.grounding import crop_kinds, lexicon, relations, seen_colours
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import load_catalog

if TYPE_CHECKING:
    from koba_ros.grounding.grounder import Grounding

MAX_CHARS = 400
CROP_VETO = 0.2       # set by the session-10 decision on validation (docs/grounding.md "Session 10")
RELATION_FIT_RATIO = 0.1   # chosen on val (docs/grounding/session28_relation_composition_rules.md, step 0)
COLOUR_MARGIN = 0.1   # candidates within this colour distance of the nearest one all fit a colour word
# Words of an answer that say nothing about which object ("I mean the one, please"); the rest goes to the grounder.
FILLER = {"i", "mean", "the", "a", "an", "one", "ones", "it", "that", "this", "in", "on", "at", "of", "to", "from",
          "box", "bin", "please", "no", "not", "yes", "neither", "none", "them", "nope", "sorry", "oh", "um", "uh",
          "left", "right", "leftmost", "rightmost", "side", "sure", "okay", "ok", "actually", "just", "is", "its",
          "which", "and", "with", "hmm", "hm", "huh", "er", "erm", "mm"}
# An answer to "which box?" with these names the box by an object in it ("where the mug is", "same box as the duck").
BOX_BY_OBJECT = {"where", "same"}
# Words that hedge an answer without saying anything about the object ("hmm, the second one I think").
HEDGES = {"hmm", "hm", "um", "uh", "er", "erm", "i", "think", "guess", "suppose", "reckon", "maybe", "probably",
          "perhaps"}
# The words of "yes" ("yes, the one in the top left box": what follows must still fit the object asked about).
YES_WORDS = {"yes", "yeah", "yep", "sure", "correct", "exactly", "ok", "okay", "affirmative"}
NOUNS = ("duck", "teddy bear", "mug", "soccer ball", "lego brick", "jenga block", "domino", "cube", "ball",
         "cylinder")
# "box" and "can" name a cube and a cylinder only after a colour or an article ("the red box", "the can"); otherwise
# they are the containers ("the box at the top right") and the verb ("can you put...", "the one you can see").
NOUN_ONLY_AFTER = {"box": {"the", "a", "that", "this", *lexicon.PALETTE}, "can": {"the", "a", "that", "this",
                                                                                 *lexicon.PALETTE}}
# "the box" next to a preposition of place is the container ("put it in the box", "the box at the top right is
# where it goes"), not a cube ("the box belongs in ...", "grab the box").
PLACE_PREPOSITIONS = {"in", "into", "inside", "to", "onto", "on", "at", "from", "out", "toward", "towards"}


@dataclass
class Reply:
    status: str                     # done | question | rejected | cancelled
    text: str                       # what the robot says
    target: int | None = None       # index into the objects
    destination: str | None = None
    candidates: list[int] = field(default_factory=list)
    confidence: float = 0.0


@dataclass
class Settings:
    ask_below: float = 0.7          # act on the best object only when its calibrated p reaches this
    reject_above: float = 0.5       # refuse when p("none of them") reaches this
    dest_ask_below: float = 0.6     # ask for the box below this
    candidate_mass: float = 0.9     # ask about the fewest objects holding this much of the object mass
    max_candidates: int = 3         # a question names at most this many objects
    pool_ratio: float = 0.1         # objects within this ratio of the best stay possible answers
    max_pool: int = 12
    max_turns: int = 3              # questions before giving up
    twin_ratio: float = 0.1         # a look-alike this likely (vs the best) still makes the words ambiguous
    keep_ratio: float = 0.5         # an attribute answer keeps the candidates scoring this close to the best
    kind_twins: bool = True         # every object of the kind (and colour) the words name is a look-alike
    singled_out: bool = True        # act below ask_below when the kind, colour and box named fit one object only
    box_needs_words: bool = True    # the box head's destination counts only when the words name a box
    seen_colours: bool = True       # a colour word also fits the camera's colour of the entries of that colour
    singled_out_any: bool = True    # the one object singled out may be another than the model's pick
    crop_veto: float = CROP_VETO    # an object is of the kind named only if the crop CNN gives that kind this much
    crop_kinds: str = ""            # the crop CNN's weights ("": the committed models/grounding/crop_kinds.pt)
    compose_relations: bool = True  # read "the cube left of the duck" in parts (relations.py; session 28)
    # Every object the landmark's words name by the catalog is a landmark as likely as the grounder's pick
    # (relations.look_alike_landmarks; session 29).
    landmark_look_alikes: bool = True


def check_settings(settings: Settings, min_confidence: float) -> None:
    """KobaError naming the first dialogue threshold out of range (with the utterance confidence a node acts from).
    NaN compares false with everything: a NaN min_utterance_confidence ignored every utterance, a NaN ask_below never
    acted; max_turns < 0 gave up at once."""
    for name, value in (("ask_below", settings.ask_below), ("reject_above", settings.reject_above),
                        ("dest_ask_below", settings.dest_ask_below), ("min_utterance_confidence", min_confidence)):
        if not 0.0 <= value <= 1.0:
            raise KobaError(f"{name} must be a number from 0 to 1, got {value}")
    if not 0.0 <= settings.crop_veto < math.inf:
        raise KobaError(f"crop_veto must be a finite number >= 0 (0: no second opinion), got {settings.crop_veto}")
    if settings.max_turns < 0:
        raise KobaError(f"max_turns must be a whole number >= 0, got {settings.max_turns}")


class Dialogue:
    """One instruction and its clarification, over one scene; `grounder` is learned or symbolic."""

    def __init__(self, grounder, objects: list[PerceivedObject], settings: Settings | None = None):
        self.grounder, self.objects, self.s = grounder, list(objects), settings or Settings()
        self.history: list[dict] = []
        self.target: int | None = None
        self.destination: str | None = None
        self.candidates: list[int] = []     # the objects the last question named
        self.pool: list[int] = []           # every object the words might mean
        self.pending: str | None = None       # target | confirm | destination
        self.questions = 0
        self.confidence = 0.0
        self.finished: Reply | None = None
        self.box_unsure = False             # the destination is the only box the instruction named
        self.box_read = False               # _read_box has settled the instruction's box words for the target
        self._noun_of: dict[int, str] = {}  # the model's noun for each object, grounded once per dialogue
        self._noun_probs = np.zeros((0, 0))  # p(object or none | "the <noun>") for each of NOUNS, same grounding
        self.why = ""                       # which rule made the first turn ask (for benchmarks and logs)
        self.listed = False                 # the last question named its candidates in order ("the first one")
        self.started_at = 0                 # the history entry of the instruction (a restart begins a later one)
        self.earlier_questions = 0          # questions asked before a restart (they count toward max_turns)
        self._named_any: set[str] = set()   # the entries the instruction names, any colour (for the crop CNN)
        self._crop_probs: dict[int, np.ndarray] = {}  # p(entry | crop) of each object the veto has read
        self.ruled_out: set[int] = set()    # objects an answer ruled out ("not the red one")
        self.reading: str | None = None     # the instruction without a negated part that names no object
        self.composed = False               # the instruction's relation was read in parts (relations.py)
        self.first_reading: Grounding | None = None   # the grounding the first turn acted on (benchmarks, logs)
        self._landmarks: dict[str, Grounding] = {}   # an answer's landmark words, grounded once per dialogue

    @property
    def instruction(self) -> str:
        """The instruction as cleaned at its turn (the first entry of the history, or the one a restart began)."""
        if self.reading is not None:
            return self.reading
        return self.history[self.started_at]["text"] if len(self.history) > self.started_at else ""

    # --- turns ---------------------------------------------------------------------------------
    def start(self, instruction: str) -> Reply:
        text = _clean(instruction)
        self.history.append({"role": "user", "text": text})
        if _too_long(instruction):  # never act on the first MAX_CHARS characters of something longer
            return self._end("rejected", f"That is too long for me to follow (over {MAX_CHARS} characters). "
                                         "Please say it in fewer words.")
        if not any(c.isalpha() for c in text):
            return self._end("rejected", "I didn't catch an instruction. "
                                         "Tell me which object to move and to which box.")
        if cancels(text):   # "stop" wins at any length: "put the duck in the top right box, no, stop"
            return self._end("cancelled", "Okay, I won't move anything.")
        if not self.objects:
            return self._end("rejected", "I don't see any objects, so I won't move anything.")
        # The model reads "the cube that is not red" as the red cube, and keeps one of two objects named: ask for
        # the one object to move, in words that say which it is. A negated part that names no object ("..., not the
        # top left one", "don't drop it") is only left out of what is read.
        said, ruled_out = lexicon.split_negation(text)
        if ruled_out:
            if _colour_word(ruled_out) or said_kinds(ruled_out) or not any(c.isalpha() for c in said):
                self.why = "negation"
                return self._ask_instruction("Please tell me which object to move, not which one to leave.")
            text = self.reading = said
        if names_two_objects(text):
            self.why = "two objects"
            return self._ask_instruction("One thing at a time, please: which object should I move first?")
        g, self.composed = self._read(text)
        self.first_reading = g
        ranked = g.ranked()
        best, p_best = ranked[0]
        dest, p_dest = g.destination
        # A box the words never name is not said, however sure the box head ("is it possible to hoist the brick?"
        # read as the top right box): ask for it rather than guess.
        if dest is not None and p_dest >= self.s.dest_ask_below and \
                (lexicon.box_mentions(text) or not self.s.box_needs_words):
            self.destination = dest
            # With one box named, it may say where the object is rather than where it goes.
            self.box_unsure = len(lexicon.box_mentions(text)) == 1
        kinds, self._named_any = said_kinds(text, colour=True), said_kinds(text)
        if g.none_prob >= self.s.reject_above and g.none_prob > p_best:
            # Before saying it is not here: do the words name a kind of object (in the colour said) that is here?
            # The model can miss a wording it never saw ("the light brown piece of wood"); ask rather than refuse.
            seen = [i for i, _ in ranked if self._is_kind(i, kinds)]
            if not seen:
                return self._end("rejected", "I can't find that object here, so I won't move anything.")
            self.candidates = self.pool = seen[:self.s.max_pool]
            self.why = "none won, but a kind named is here"
            self.confidence = p_best
            return self._next()
        sure = p_best >= self.s.ask_below
        words_only = None
        if sure and self.box_unsure and self.objects[best].box == self.destination:
            # The pick sits in the one box named: which objects do the object words alone fit?
            words_only = self.grounder.ground(" ".join(lexicon.without_boxes(text)) or ".", self.objects)
        twins = self._twins(text, best, ranked, words_only, kinds) if sure else []
        if sure and kinds and not self._is_kind(best, kinds):
            # The words name a kind of object the pick is not ("the can" -> a cube): ask about that kind instead.
            # (Said apart when the model's noun agreed with the words and only the crop CNN said otherwise.)
            noun_agrees = bool(NOUN_ENTRIES[self._names([best])[best]] & kinds)
            self.why = "crop says the pick is not of the kind named" if noun_agrees else "pick not of the kind named"
            of_kind = [i for i, _ in ranked if self._is_kind(i, kinds)]
            self.candidates = self.pool = (of_kind or [best])[:self.s.max_pool]
            self.confidence = p_best
        elif sure and not twins and not (self._checkable(text) or _kind_mentions(text, whole=True)[0]):
            # Words that say nothing checkable about any object ("hello", "what can you do?"): the model still picks
            # one, surely; ask whether it is the one meant rather than move it when the box is said next.
            self.why = "nothing checkable said"
            self.candidates = self.pool = [best]
            self.confidence = p_best
        elif sure and not twins:
            self.target, self.confidence = best, p_best
        elif twins:
            # Never guess silently: the words fit look-alikes too, however sure the model is of one.
            self.why = "look-alikes"
            self.candidates = self.pool = [best, *twins][:self.s.max_pool]
            self.confidence = p_best
        elif self.s.singled_out and (one := self._single_fit(text, g, best, p_best)) is not None:
            # Unsure, but the words pick out exactly one object: act (the converse of the look-alike rule; on unseen
            # wording the model spreads its probability although it reads them right).
            self.target, self.confidence = one, float(g.target_probs[one])
        else:
            self.why = "below ask_below"
            self.pool = [i for i, p in ranked if p >= self.s.pool_ratio * p_best][:self.s.max_pool]
            shortlist = self._candidates(ranked)
            # Too many to name one by one: ask about all of them (by box) instead of a shortlist that may miss it.
            self.candidates = self.pool if len(self.pool) > self.s.max_candidates else shortlist
            self.confidence = p_best
        return self._next()

    def answer(self, text: str) -> Reply:
        if self.finished:
            return self.finished
        text = _clean(text)
        self.history.append({"role": "user", "text": text})
        if cancels(text):
            return self._end("cancelled", "Okay, I won't move anything.")
        if new_instruction(text) is not None:
            return self._restart(text)      # "never mind, put the duck in the top right box"
        if _too_long(text):
            return self._next(understood=False)
        if self.pending == "instruction":
            return self._restart(text)  # asked for the instruction again
        if self.pending == "destination":
            # "the box in the top right, not the bottom left": the box ruled out is not the answer.
            said, ruled_out = lexicon.split_negation(text)
            not_boxes = {b for _, b in lexicon.box_mentions(ruled_out)}
            said = said if not_boxes else text
            kinds = said_kinds(said)
            if kinds and self.target is not None and not self._plausible(kinds)[self.target]:
                if not BOX_BY_OBJECT & set(lexicon.words(said)):
                    return self._restart(text)  # "put the blue ball in the top right box", asked where the duck goes
                # "where the mug is", "the same box as the jenga block": the box of the object named, not a new
                # instruction about it; understood when the objects the words fit are all in one box.
                boxes = {self.objects[i].box for i in self._words_fit(said)}
                if len(boxes) == 1:
                    self.destination = boxes.pop()
                return self._next(understood=self.destination is not None)
            box = lexicon.parse_box(said)
            # As in start(): the box head alone reads a box into words that name none ("I don't know").
            if box is None and any(c.isalpha() for c in said) and not self.s.box_needs_words:
                dest, p = self.grounder.ground(said, self.objects).destination
                box = dest if p >= self.s.dest_ask_below else None
            if box in not_boxes:
                box = None
            if box is not None:
                self.destination = box
            return self._next(understood=box is not None)
        if self.pending == "confirm":
            yes = lexicon.yes_no(text)
            if yes is True:
                rest = " ".join(w for w in lexicon.words(text) if w not in YES_WORDS)
                if not lexicon.negated(rest) and (not self._describes(rest) or self._fits(rest, self.candidates[0])):
                    self.target = self.candidates[0]
                    return self._next()
                box = lexicon.parse_box(rest)
                if box is not None and not lexicon.negated(rest) and not self._names_an_object(rest):
                    # "yes, put it in the top right box": a box and no word about an object is where it goes
                    self.target, self.destination, self.box_unsure = self.candidates[0], box, False
                    self.box_read = True    # said now, it wins over the instruction's box words
                    return self._next()
                text = rest     # "yes, the duck", asked about a cube: the rest is the answer
        if self.pending in ("target", "confirm"):
            said, ruled_out = lexicon.split_negation(text)
            if ruled_out and self._checkable(ruled_out):
                return self._rule_out(said, ruled_out)     # "not the first one", "the blue one, not the red one"
            if _denies(text) and not self._describes(text):
                return self._deny()      # "no" / "neither" / "none of them", and nothing more
            named = list(self.candidates)
            if self._resolve(text):
                return self._next()
            colour = _colour_word(text)
            if colour and not any(self._fits_words(text, c, colour, False) for c in named):
                return self._next(sorry=f"None of them is {colour}. ")
            return self._next(understood=False)
        return self._next(understood=False)

    def _ask_instruction(self, text: str) -> Reply:
        """Ask for the instruction again (its answer starts the dialogue over); counts toward max_turns."""
        if self.questions + self.earlier_questions >= self.s.max_turns:
            return self._give_up()
        self.questions += 1
        self.pending = "instruction"
        return self._ask(text)

    def _checkable(self, text: str) -> bool:
        """Does the text say something checkable about which object: an order, a box, a side, a colour, a kind?"""
        return (lexicon.ordinal(text) is not None and self.listed) or bool(
            lexicon.parse_box(text) or lexicon.side(text) or _colour_word(text) or said_kinds(text)
            or (self.s.compose_relations and relations.parse(text)))

    def _rule_out(self, said: str, ruled_out: str) -> Reply:
        """An answer that rules objects out ("not the first one", "no, not the red one", "the blue one, not the red
        one"): drop the objects named what it rules out, never pick one of them, and read the rest of the answer
        among what is left. With nothing else said, one object left is asked about (yes/no), not moved."""
        named = list(self.candidates)
        k = lexicon.ordinal(ruled_out)
        if k is not None and self.listed and -len(named) <= k < len(named):
            out = {named[k]}
        else:
            out = set(self._named_by(ruled_out, named))
        self.ruled_out |= out
        self.pool = [i for i in self.pool if i not in out]
        if self._describes(said) or (lexicon.ordinal(said) is not None and self.listed):
            understood = self._resolve(said)
            self.candidates = [c for c in self.candidates if c not in self.ruled_out]
            return self._next(understood=understood)
        left = [c for c in named if c not in out]
        if not left:
            return self._deny()
        self.candidates = left
        return self._next(understood=bool(out))

    def _named_by(self, text: str, cands: list[int]) -> list[int]:
        """The candidates the words name by what can be checked literally: box, side, colour, kind (no ranking)."""
        if (by_relation := self._by_relation(text, cands)) is not None:
            cands, text = by_relation     # "not the one left of the duck"
            if not cands:
                return []
        box, side, colour, kinds = lexicon.parse_box(text), lexicon.side(text), _colour_word(text), said_kinds(text)
        if not (box or side or colour or kinds or by_relation):
            return []
        if box:
            cands = [c for c in cands if self.objects[c].box == box]
        if side and len(cands) > 1:
            x = self._centre_x
            cands = [min(cands, key=x) if side == "left" else max(cands, key=x)]
        return [c for c in cands if self._fits_words(text, c, colour, True)]

    @staticmethod
    def _names_an_object(text: str) -> bool:
        """Does the text say anything about an object, beyond a box ("the one ...", a colour, a kind, a side)?"""
        words = lexicon.without_boxes(text)
        rest = " ".join(words)
        return bool({"one", "ones"} & set(words) or _colour_word(rest) or said_kinds(text) or lexicon.side(rest))

    def _fits(self, text: str, i: int) -> bool:
        """Could what the text says (its box, colour and kind) be object i? ("yes, the one in the top left box",
        asked about an object elsewhere, could not.)"""
        box = lexicon.parse_box(text)
        return (box is None or box == self.objects[i].box) and self._fits_words(text, i, _colour_word(text), True)

    def _restart(self, text: str) -> Reply:
        """The answer is a new instruction about an object this dialogue was not going to move: start over with
        it (the history keeps the earlier turns)."""
        history, questions = self.history[:-1], self.questions + self.earlier_questions
        self.__init__(self.grounder, self.objects, self.s)
        self.history, self.started_at = history, len(history)
        self.earlier_questions = questions  # max_turns bounds the whole conversation, restarts included
        return self.start(text)

    # --- deciding what to say --------------------------------------------------------------------
    def _next(self, understood: bool = True, sorry: str | None = None) -> Reply:
        if self.target is None:
            if self.questions + self.earlier_questions >= self.s.max_turns:
                return self._give_up()
            self.questions += 1
            sorry = sorry if sorry is not None else "" if understood else "Sorry, I didn't get that. "
            self.listed = 1 <= len(self.candidates) <= self.s.max_candidates
            if not self.candidates:
                self.pending = "target"
                return self._ask(sorry + "Which object do you mean? Tell me its colour and its box.")
            if len(self.candidates) == 1:
                self.pending = "confirm"
                return self._ask(sorry + f"Do you mean {self._phrases(self.candidates)[0]}?")
            self.pending = "target"
            if len(self.candidates) > self.s.max_candidates:
                self.candidates = self.candidates[:self.s.max_pool]
                boxes = sorted({self.objects[i].box for i in self.candidates})
                where = _either([lexicon.box_words(b) for b in boxes])
                return self._ask(sorry + f"{len(self.candidates)} objects could fit, in the {where} "
                                 f"box{'es' if len(boxes) > 1 else ''}. Which one do you mean?")
            return self._ask(sorry + "Do you mean " + _either(self._phrases(self.candidates)) + "?")
        already = "" if self.box_read else self._read_box()
        if self.destination is None:
            if self.questions + self.earlier_questions >= self.s.max_turns:
                return self._give_up()
            self.questions += 1
            self.why = self.why or "box not said or unsure"
            self.pending = "destination"
            sorry = "" if understood else "Sorry, I didn't get that. "
            return self._ask(sorry + already + "Which box should I put it in: top left, top right, bottom left or "
                                               "bottom right?")
        moving = self._phrases([self.target])[0].replace(" in the ", " from the ", 1)
        return self._end("done", f"Okay, I'll move {moving} to the {lexicon.box_words(self.destination)} box.")

    def _read_box(self) -> str:
        """Once the object is known, settle what the instruction's box words say about it; returns what to say
        before asking for the box ("It is already in the top left box. "), or "".

        A box phrase says either where the object is or where it goes. When the object is not in the box the words
        leave (_destination_said: the one named, or the other of two), that box cannot say where it is, so it is
        where the object goes, whatever the box head read: on unseen wording ("I would love the duck in the top
        right slot") the head reads the duck's own box, a box never named or "not said", however sure. When the
        robot had to ask which object and it sits in the one box named, that box probably says where it is ("the
        red can in the box at the bottom right"), whatever box the head read: ask where it goes."""
        self.box_read = True
        box = self.objects[self.target].box
        said = self._destination_said(self.instruction, self.target)
        sources, named = _from_boxes(self.instruction)
        if said is not None:
            self.destination, self.box_unsure = said, False
        elif sources and named == [box]:
            # "move the mug from the top left box to the top right box", the mug in the top right one: the box named
            # as the destination is where it is; never read the "from" box as where it goes.
            self.box_unsure, self.destination = False, None
            return f"It is already in the {lexicon.box_words(box)} box. "
        elif self.destination in sources and self.destination not in named:
            self.destination = None     # only said as where it comes from ("lift the duck from the top left box")
        elif self.box_unsure and self.questions and [b for _, b in lexicon.box_mentions(self.instruction)] == [box]:
            self.box_unsure, self.destination = False, None
            return f"It is already in the {lexicon.box_words(box)} box. "
        return ""

    def _candidates(self, ranked) -> list[int]:
        mass = sum(p for _, p in ranked)
        out, acc = [], 0.0
        for i, p in ranked:
            out.append(i)
            acc += p
            if acc >= self.s.candidate_mass * mass or len(out) >= self.s.max_candidates:
                break
        return out

    def _destination_said(self, text: str, target: int) -> str | None:
        """The box the words must mean as the destination of `target`: of the boxes they name, one mention of the
        box the object is in may say where it is; the one box left is where it goes ("the cube placed in the top
        left slot belongs in the top right spot" -> top right; "the cube belongs in the top right spot", the cube
        elsewhere -> top right; the same box twice -> that box). None when no box or two are left: "the cube in the
        top left box" with the cube there may say where it is, not where it goes (a missing box: ask)."""
        _, mentions = _from_boxes(text)   # a box said as where it comes from ("from the top left box") never is
        if self.objects[target].box in mentions:
            mentions.remove(self.objects[target].box)
        return mentions[0] if len(mentions) == 1 else None

    def _twins(self, text: str, best: int, ranked, words_only: Grounding | None, kinds: set[str]) -> list[int]:
        """Look-alikes of `best` (same colour word and noun) that the words fit too, however sure the model is of
        `best`: the model gives them at least twin_ratio of the top probability, and the words cannot be telling
        them apart (not one in its box on the other side of it from the side they say, nor, when they name the box
        `best` is in -- other than as the destination -- one in another box). When the only box named was read as the
        destination and `best` is in it, the probabilities are those of the words without that box (`words_only`):
        "the ball you kick in the lower left corner" -- is the ball there, or does it go there?"""
        fit = words_only.ranked() if words_only is not None else ranked
        p = dict(fit)
        top = fit[0][1] if words_only is not None else p[best]
        box = self.objects[best].box
        mentions = [b for _, b in lexicon.box_mentions(text)]
        # The words say where it is: they name its box, and not only as the destination.
        located = box in mentions and (self.destination != box or len(mentions) >= 2)
        # The side of a relation to a landmark that is nowhere here ("left of the teddy bear") is no side in the box.
        lost = self._lost_landmark(text)
        side, x = None if lost else lexicon.side(text), self._centre_x
        # A side said rules out the objects in the pick's box on the other side of it ("on the left": those to its
        # right), not one further to that side, which the words fit better than the pick.
        beyond = {"left": lambda i: x(i) > x(best), "right": lambda i: x(i) < x(best)}.get(side, lambda i: False)
        near = [i for i, _ in fit if i != best
                and not (self.objects[i].box == box and beyond(i)) and not (located and self.objects[i].box != box)]
        if not near:
            return []
        if self.composed:
            # A relation read in parts: the kind and colour rules already chose what fits in the composition, and the
            # landmark and side told those apart, so the composed probability alone says what is still in doubt.
            names, colour = self._names([best, *near]), {i: _colour(self.objects[i]) for i in [best, *near]}
            return [i for i in near if p[i] >= self.s.twin_ratio * top and names[i] == names[best]
                    and colour[i] == colour[best]]
        if kinds and self.s.kind_twins and (relations.parse(text) is None or lost):
            # The words name a kind ("the can", "the blue square block"): every other object of that kind (by the
            # model's own noun for it) in the colour said (the camera colours nearest it; any colour when none is
            # said) fits them as well as the pick does, however sure the model is of one -- a sharp model gives its
            # look-alikes p ~ 0. Not when they place it beside a landmark ("the cube left of the duck"): that tells
            # the look-alikes apart, and the model's relation module decides (session 27) -- unless the landmark is of
            # a kind the catalog finds nowhere here: then it tells nothing apart.
            named, nouns = said_kinds(text), self._names([best, *near])
            of_kind = [i for i in [best, *near] if NOUN_KINDS[nouns[i]] & named]
            colour_said = _colour_word(" ".join(lexicon.without_boxes(text)))
            fits = set(self._nearest_colour(colour_said, of_kind) if colour_said and of_kind else of_kind)
            if best in fits:
                return [i for i in near if i in fits]
        # Otherwise the model's probability decides which look-alikes the words fit; words that name no kind of
        # object ("the blue item") fit every object of the colour they say, however unlikely the model finds it.
        ratio = self.s.twin_ratio if kinds else 0.0
        near = [i for i in near if p[i] >= ratio * top]
        colour_said = _colour_word(" ".join(lexicon.without_boxes(text)))
        if not kinds and not said_kinds(text) and colour_said and near:
            # Words that name no kind fit the objects nearest the colour they say ("the tan thingy": the tan block,
            # not the brown bear the camera also calls brown), as the kind rule compares them. (Not a kind in a colour
            # the catalog lacks, "the brown sphere": that names no object here, and every brown object stays a
            # look-alike.)
            nearest = self._nearest_colour(colour_said, [best, *near])
            if best in nearest:
                return [i for i in near if i in nearest]
        names, colour = self._names([best, *near]), {i: _colour(self.objects[i]) for i in [best, *near]}
        return [i for i in near if (names[i] == names[best] or not kinds) and colour[i] == colour[best]]

    def _lost_landmark(self, text: str) -> bool:
        """Do the words place the object beside a landmark of a kind no object here is ("the red cube left of the teddy
        bear", no bear)?"""
        relation = relations.parse(text) if self.s.compose_relations else None
        return relation is not None and bool(said_kinds(relation.landmark)) and \
            not self._words_fit(relation.landmark, landmark=True)

    def _single_fit(self, text: str, g, best: int, p_best: float) -> int | None:
        """The one object the words single out when the robot may act on it below ask_below: the model's pick,
        or (singled_out_any) another object the robot would have asked about (p >= pool_ratio of the pick). The box
        it goes to must be known, and "none of them" is one more look-alike: the model must not find it plausible
        (twin_ratio of the object)."""
        one = self._singled_out(text)
        if len(one) != 1 or (one[0] != best and not self.s.singled_out_any):
            return None
        i, p = one[0], float(g.target_probs[one[0]])
        dest = g.destination[0]
        if p < self.s.pool_ratio * p_best or g.none_prob >= self.s.twin_ratio * p:
            return None
        return i if self.destination is not None or self._destination_said(text, i) == dest else None

    def _singled_out(self, text: str) -> list[int]:
        """The objects the words fit by what they say that can be checked: the kind named (by the model's nouns),
        the colour said, the box they locate it in (named other than as the destination), and the extreme of those
        on the side said. Words that name no kind ("the red thingy") fit every object of the colour said. Since this
        decides to act without asking, ruling an object out needs firm evidence (see below), and so does keeping
        one: empty when an object left fits only for want of evidence against it, or the words say neither a kind
        nor a colour."""
        named, colour_said = said_kinds(text), _colour_word(" ".join(lexicon.without_boxes(text)))
        if not (named or colour_said):
            return []
        nouns = self._names(list(range(len(self.objects))))
        fits = list(nouns)
        # The pick must fit by firm evidence too: the model's own noun for it is of the kind, the camera's colour word
        # for it the colour said.
        firm = {i for i in fits if not named or NOUN_KINDS[nouns[i]] & named}
        if named:
            # The model names shaded or occluded copies by other nouns, so any object the words' nouns find
            # plausible (twin_ratio of the likeliest) counts as of the kind.
            of_kind, other = self._plausible(named), self._plausible(named, other_kinds=True)
            fits = [i for i in fits if NOUN_KINDS[nouns[i]] & named or of_kind[i]]
            # Likewise the pick is firmly of the kind only when no noun of another kind finds it plausible (a red
            # ball in shade the model calls a cylinder is plausibly a ball too).
            firm -= {i for i in fits if other[i]}
            # And not when the crop CNN, which never saw the words, is sure it is another kind.
            firm -= self._crop_denied(fits)
        if colour_said and fits:
            # A colour rules out only an object the camera sees in another colour its kind comes in: a red cube in
            # shade looks brown, which no cube is, so it may still be the red one.
            nearest = self._nearest_colour(colour_said, fits)
            seen = {i: _colour(self.objects[i]) for i in fits}
            comes_in = {i: {CATALOG[e].color for e in NOUN_ENTRIES[nouns[i]] | named} for i in fits}
            fits = [i for i in fits if i in nearest or seen[i] == colour_said or seen[i] not in comes_in[i]]
            firm &= {i for i in fits if seen[i] == colour_said}   # "nearest" is relative: none may be that colour
        mentions = {b for _, b in lexicon.box_mentions(text)}
        # One box named is the destination; of two, the other says where the object is (the same box twice: both).
        where = (mentions - {self.destination} or mentions) if len(lexicon.box_mentions(text)) >= 2 else set()
        if len(where) == 1:
            fits = [i for i in fits if self.objects[i].box in where]
        side = lexicon.side(text)
        # A side said in the box named picks the extreme object there ("the cube on the extreme left in the top left
        # box"), but not beside a landmark ("left of the duck", "the duck's left", "flanking the duck on the left").
        if side and len(where) == 1 and len(fits) > 1 and relations.parse(text) is None:
            fits = [min(fits, key=self._centre_x) if side == "left" else max(fits, key=self._centre_x)]
        return fits if set(fits) <= firm else []

    def _read(self, text: str) -> tuple[Grounding, bool]:
        """The grounder's reading of the words, and whether a relation in them was read in parts (relations.py)."""
        if self.s.compose_relations:
            return relations.read(self.grounder, text, self.objects, RELATION_FIT_RATIO, self._words_fit,
                                  functools.partial(self._words_fit, landmark=True) if self.s.landmark_look_alikes
                                  else None)
        return self.grounder.ground(text, self.objects), False

    def _by_relation(self, text: str, cands: list[int]) -> tuple[list[int], str] | None:
        """An answer that says a relation ("the one to the left of the duck", "the one next to the mug"): the
        candidates it picks, composed over them (each fits; the landmark as the grounder reads it), and the rest of
        its words. None when it says no relation or the landmark is nowhere here."""
        relation = relations.parse(text) if self.s.compose_relations else None
        if relation is None or not cands:
            return None
        if relation.landmark not in self._landmarks:   # _resolve tries up to three candidate sets per answer
            self._landmarks[relation.landmark] = self.grounder.ground(relation.landmark, self.objects)
        landmark = self._landmarks[relation.landmark]
        if landmark.none_prob >= 0.5:
            return None
        asked = np.zeros(len(self.objects) + 1)
        asked[cands] = 1.0 / len(cands)
        g = relations.compose(dataclasses.replace(landmark, target_probs=asked), landmark, self.objects,
                              relation.side, RELATION_FIT_RATIO, set(cands))
        top = max(float(g.target_probs[c]) for c in cands)
        picked = [c for c in cands if top > 0 and g.target_probs[c] >= self.s.keep_ratio * top]
        return picked, relation.rest

    def _words_fit(self, text: str, landmark: bool = False) -> set[int]:
        """The objects the words fit by the kind rule (_twins): of a kind they name by the model's own noun for it,
        nearest the colour they say; naming no kind, nearest the colour they say; neither: none known. A
        `landmark`'s words ("the plastic cube", relations.look_alike_landmarks) must name a kind, fit by catalog
        entry (NOUN_ENTRIES, broader than the noun's kind), and the crop CNN may deny one (read only when the words
        name two or more: with one there is nothing to raise)."""
        named, colour_said = said_kinds(text), _colour_word(" ".join(lexicon.without_boxes(text)))
        fits = list(range(len(self.objects)))
        if named:
            nouns, table = self._names(fits), NOUN_ENTRIES if landmark else NOUN_KINDS
            fits = [i for i in fits if table[nouns[i]] & named]
            if landmark and len(fits) >= 2:
                denied = self._crop_denied(fits, named)
                fits = [i for i in fits if i not in denied]
        elif landmark or not colour_said:
            return set()
        return set(self._nearest_colour(colour_said, fits) if colour_said and fits else fits)

    def _plausible(self, kinds: set[str], other_kinds: bool = False) -> np.ndarray:
        """Which objects a noun of these kinds (or, with other_kinds, a noun of no such kind) finds plausible: p at
        least twin_ratio of the likeliest. The model names shaded or occluded copies by other nouns (a red
        cylinder it calls a mug), so one plausible noun counts."""
        self._names([])     # grounds the nouns once
        out = np.zeros(len(self.objects), bool)
        for k, noun in enumerate(NOUNS):
            if bool(NOUN_KINDS[noun] & kinds) != other_kinds:
                p = self._noun_probs[k]     # the last entry is "none of them": a noun of nothing here finds nothing
                out |= p[:-1] >= self.s.twin_ratio * p.max()
        return out

    def _is_kind(self, i: int, kinds: set[str]) -> bool:
        """Is object i one of the catalog entries the words name? By the model's own noun for it, unless the crop
        CNN, which never saw the words, is sure it is another kind. (The catalog head's visual entry classifier was
        measured as the alternative to the noun: it moved one more absent object on the validation phrasings.)"""
        return bool(NOUN_ENTRIES[self._names([i])[i]] & kinds) and not self._crop_denies(i)

    def _crop_denies(self, i: int) -> bool:
        return i in self._crop_denied([i])

    def _crop_denied(self, idx, kinds: set[str] | None = None) -> set[int]:
        """The objects of idx to which the crop CNN (crop_kinds.py) gives the kinds the instruction names (or
        `kinds`), in any colour, less than crop_veto. The words' model can share one confusion with certainty ("the
        green block" -> the green cylinder when no green block is here); the crop alone cannot. No crop, no opinion.
        Each object's crop is read once, and only when asked about (a whole scene costs as much CPU as a grounding
        turn)."""
        kinds = self._named_any if kinds is None else kinds
        if self.s.crop_veto <= 0 or not kinds:
            return set()
        net = crop_kinds.load_cached(self.s.crop_kinds or str(crop_kinds.default_path()))
        todo = [i for i in dict.fromkeys(idx) if i not in self._crop_probs]
        if todo:
            self._crop_probs.update(zip(todo, net.probs([self.objects[i] for i in todo]), strict=True))
        return {i for i in idx if net.mass(self._crop_probs[i], kinds) < self.s.crop_veto}  # NaN: False

    def _centre_x(self, i: int) -> float:
        return self.objects[i].bbox[0] + self.objects[i].bbox[2] / 2

    def _deny(self) -> Reply:
        """A plain "no": drop the objects just named; ask about the rest of what the words fit, or give up."""
        named = set(self.candidates)
        rest = [c for c in self.pool if c not in named]
        if not rest:
            return self._end("rejected", "Sorry, then I don't know which object you mean, so I won't move anything.")
        self.candidates = self.pool = rest
        return self._next()

    def _resolve(self, text: str) -> bool:
        """Narrow down to what the answer picks out: first among the objects the question named, then (a
        correction: "no, the blue one in the top left box") among the others the words might mean, then among
        all objects. True when the answer picked out fewer objects than it was read against."""
        k = lexicon.ordinal(text)  # "the first one" means an order only a question that named them gave
        tokens = lexicon.words(text)
        if k is not None and self.listed and len({lexicon.ORDINALS[w] for w in tokens if w in lexicon.ORDINALS}) > 1:
            return False    # "the first one, no the second one", "the first and the second": ask again
        if k is not None and self.listed and -len(self.candidates) <= k < len(self.candidates) \
                and len([w for w in tokens if w not in HEDGES]) <= 5:   # "hmm the second one I think"
            if self.candidates[k] in self.ruled_out:
                return False
            self.target = self.candidates[k]
            return True
        named = [i for i in self.candidates if i not in self.ruled_out]
        # Beyond the objects named, only those the instruction's kind and colour words fit ("put the red cube ...",
        # answered "the one in the top right box", is not the red mug there), unless the answer says its own ("no,
        # the blue ball": a correction).
        said = self.instruction
        said = relation.rest if (relation := relations.parse(said)) is not None else said
        colour = None if _colour_word(text) else _colour_word(" ".join(lexicon.without_boxes(said)))
        said = "" if said_kinds(text) else said
        others = [i for i in range(len(self.objects)) if i not in self.candidates and i not in self.ruled_out
                  and self._fits_words(said, i, colour, True)]
        pool_rest = [i for i in self.pool if i in others]
        searches = [pool_rest, others] if _denies(text) else [named, pool_rest, others]
        # Only the model's ranking of the words can have picked one ("hmm", "the other one"): ask, never act on it.
        checkable = self._checkable(text)
        for cands in searches:
            kept = self._narrow(text, cands)
            if not kept:
                continue            # fits none of these: look further
            if len(kept) == len(cands) > 1 and cands is named:
                return False        # fits them all: it does not answer the question
            # (Beyond them, the objects the instruction's words fit, all of which the answer may pick: "the red cube",
            # answered "no" and then "the one in the top left box", is about the red cubes there.)
            self.candidates = self.pool = kept
            if len(kept) == 1 and checkable:
                self.target = kept[0]
            return True
        return False

    def _narrow(self, text: str, cands: list[int]) -> list[int] | None:
        """The candidates the answer fits: its box, its side inside a box, its colour, then the rest of its words
        ranked by the grounder among what is left. None when it fits none of them or says nothing usable."""
        if not cands:
            return None
        said = False
        if (by_relation := self._by_relation(text, cands)) is not None:
            cands, text = by_relation     # then the rest of the answer ("the red one left of the duck")
            if not cands:
                return None
            said = True
        box = lexicon.parse_box(text)
        if box is not None:
            cands, said = [c for c in cands if self.objects[c].box == box], True
        side = lexicon.side(text)
        if side and len(cands) > 1:
            said = True
            if len(cands) == 2 or len({self.objects[c].box for c in cands}) == 1:
                cands = [min(cands, key=self._centre_x) if side == "left" else max(cands, key=self._centre_x)]
            else:   # across boxes "the one on the left" can only mean the left-hand boxes
                cands = [c for c in cands if self.objects[c].box.endswith(side)]
        colour = _colour_word(text)
        if colour:
            said = True
            cands = self._nearest_colour(colour, cands) if cands else cands
        if len(cands) > 1 and (colour or self._describes(text, box_side_colour=False)):
            said = True
            # Anything else ("the cube", "the ball you kick"), or a colour the camera's colours cannot separate (a
            # red cube in shade looks as brown as the ball beside it): let the grounder rank what is left. The
            # answer already fits these, so "none of them" does not veto the ranking among them.
            g = self.grounder.ground(text, [self.objects[c] for c in cands])
            ranked = g.ranked()
            if ranked[0][1] > 0.0:
                cands = [cands[j] for j, p in ranked if p >= self.s.keep_ratio * ranked[0][1]]
        if said and len(cands) == 1 and not self._fits_words(text, cands[0], colour, True):
            # One object left, but not one the answer's colour or kind words describe: "the duck" or "the green one"
            # (no object is green; the blue one is only the nearest) among cubes.
            return None
        return cands if said and cands else None

    def _fits_words(self, text: str, i: int, colour: str | None, kind: bool) -> bool:
        """Could the colour (if given) and, with `kind`, the kind the text names be object i's? Leniently: one of
        the colour words nearest its camera colour; a noun of the kind that finds it plausible ("the mug in the
        bottom left box" is not the teddy bear there)."""
        kinds = said_kinds(text) if kind else set()
        if kinds and not self._plausible(kinds)[i]:
            return False
        if not colour:
            return True
        rgb = self.objects[i].mean_rgb
        nearest = min(_colour_word_distance(rgb, c, self.s.seen_colours) for c in lexicon.PALETTE)
        return _colour_word_distance(rgb, colour, self.s.seen_colours) <= nearest + COLOUR_MARGIN

    def _nearest_colour(self, colour: str, cands: list[int]) -> list[int]:
        """Candidates whose colour is nearest the named one (people say "the tan one" of what the camera sees as
        brown, "white" of the black-and-white ball), so the named colour is compared, not matched exactly."""
        d = {c: _colour_word_distance(self.objects[c].mean_rgb, colour, self.s.seen_colours) for c in cands}
        best = min(d.values())
        return [c for c in cands if d[c] <= best + COLOUR_MARGIN]

    def _describes(self, text: str, box_side_colour: bool = True) -> bool:
        """Does the text say anything about an object (a box, side, colour, or any other content word)?"""
        if box_side_colour and (lexicon.parse_box(text) or lexicon.side(text) or _colour_word(text)):
            return True
        return any(w not in FILLER and w not in lexicon.PALETTE for w in lexicon.without_boxes(text))

    # --- words -----------------------------------------------------------------------------------
    def _names(self, idx: list[int]) -> dict[int, str]:
        """A noun for each object: the catalog noun whose words pick it out best (the model names it)."""
        if not self._noun_of:
            texts = [f"the {n}" for n in NOUNS]
            grounded = self.grounder.ground_batch(texts, [self.objects] * len(texts))
            self._noun_probs = np.array([gr.target_probs for gr in grounded])
            self._noun_of = {i: NOUNS[max(range(len(NOUNS)), key=lambda k: grounded[k].target_probs[i])]
                             for i in range(len(self.objects))}
        return {i: self._noun_of[i] for i in idx}

    def _phrases(self, idx: list[int]) -> list[str]:
        """Descriptions that tell these objects apart, and from their look-alikes not named: colour, noun, box, and
        side within a box ("Do you mean the red cube in the top left box?" with two there could not be answered)."""
        everything = list(range(len(self.objects)))
        names = self._names(everything)
        colour = {i: _colour(self.objects[i]) for i in everything}
        boxes = {i: self.objects[i].box for i in idx}
        out = []
        for n, i in enumerate(idx):
            parts = ["the"]
            same = [j for j in everything if j != i and colour[j] == colour[i] and names[j] == names[i]]
            if n == 0 or len({colour[j] for j in idx}) > 1:
                parts.append(colour[i])
            parts.append(names[i] if n == 0 or len({names[j] for j in idx}) > 1 else "one")
            if len(set(boxes.values())) > 1 or len(idx) == 1:
                parts.append(f"in the {lexicon.box_words(boxes[i])} box")
            twins = [j for j in same if self.objects[j].box == boxes[i]]
            if twins:
                x = self._centre_x
                parts.append("on the left" if all(x(i) < x(j) for j in twins) else
                             "on the right" if all(x(i) > x(j) for j in twins) else "in the middle")
            out.append(" ".join(parts))
        return out

    def _ask(self, text: str) -> Reply:
        self.history.append({"role": "robot", "text": text})
        return Reply("question", text, self.target, self.destination, list(self.candidates), self.confidence)

    def _give_up(self) -> Reply:
        return self._end("rejected", "Sorry, I still can't tell what you mean, so I'll leave everything where it is.")

    def _end(self, status: str, text: str) -> Reply:
        self.history.append({"role": "robot", "text": text})
        self.pending = None
        reply = Reply(status, text, self.target if status == "done" else None,
                      self.destination if status == "done" else None, list(self.candidates), self.confidence)
        self.finished = reply
        return reply


def new_instruction(text: str) -> str | None:
    """What follows a leading "never mind" that gives a new instruction ("never mind, put the duck in the top right
    box"), or None. (start() reads it as the instruction: "never" rules out only "mind", which names no object.)"""
    m = re.match(r"\W*(?:never\s*mind)\b\W*(.*)", str(text or ""), re.IGNORECASE | re.DOTALL)
    rest = m.group(1) if m else ""
    return rest if any(c.isalpha() for c in rest) and not lexicon.is_cancel(rest) else None


def cancels(text: str) -> bool:
    """Does the text stop or cancel? "stop" always wins: any stop or cancel word anywhere, at any length ("stop putting
    the duck in the top right box", "put the duck in the top right box, no, stop"), except "never mind, <a new
    instruction>", which starts over with it. The dialogue and grounding_node share this one test."""
    return lexicon.is_cancel(text) and new_instruction(text) is None


def _clean(text) -> str:
    # Collapse the spaces first: cut first, "put the duck" + 400 spaces + "in the top right box" lost its box and was
    # read as "put the duck", although _too_long (which measures it collapsed) let it through.
    return " ".join(str(text or "").split())[:MAX_CHARS]


def _too_long(text) -> bool:
    return len(" ".join(str(text or "").split())) > MAX_CHARS


FROM_SKIP = {"the", "box", "bin", "in", "at"}   # "from the box in the top left"


def _from_boxes(text: str) -> tuple[set[str], list[str]]:
    """The boxes the text says the object comes from ("from the top left box", "out of the box at the top left"), and
    the other box mentions in order."""
    tokens, sources, others = lexicon.words(text), set(), []
    for a, _, box in lexicon.box_spans(text):
        k = a - 1
        while k >= 0 and a - k <= len(FROM_SKIP) and tokens[k] in FROM_SKIP:
            k -= 1
        if k >= 0 and (tokens[k] == "from" or k >= 1 and tokens[k - 1:k + 1] == ["out", "of"]):
            sources.add(box)
        else:
            others.append(box)
    return sources, others


def _either(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _colour(obj: PerceivedObject) -> str:
    return lexicon.colour_name(obj.mean_rgb)


def _denies(text: str) -> bool:
    return lexicon.yes_no(text) is False or "none" in lexicon.words(text)


def _colour_word(text: str) -> str | None:
    """The one colour the text names ("the red one"), or None (none, or several: "black and white")."""
    said = {w for w in lexicon.without_boxes(text) if w in lexicon.PALETTE}
    return said.pop() if len(said) == 1 else None


def _colour_distance(rgb, ref) -> float:
    """Chromaticity distance plus a little brightness difference (the measure lexicon.colour_name uses)."""
    rgb, ref = np.asarray(rgb, float), np.asarray(ref, float)
    chroma = np.linalg.norm(rgb / (np.linalg.norm(rgb) + 1e-6) - ref / (np.linalg.norm(ref) + 1e-6))
    return float(chroma + 0.3 * abs(rgb.mean() - ref.mean()))


def _colour_word_distance(rgb, colour: str, seen: bool = True) -> float:
    """How far a camera colour is from a colour word: from the word's reference colour (lexicon.PALETTE) or from
    the camera's colour of a catalog entry people call that colour (seen_colours: the jenga block people call tan
    looks dark orange-brown, nearer the teddy bear than tan), whichever is nearer."""
    table = seen_colours.load() if seen else {}
    refs = [lexicon.PALETTE[colour], *(table[e] for e, x in CATALOG.items() if x.color == colour and e in table)]
    return min(_colour_distance(rgb, ref) for ref in refs)


def _kind_phrases() -> dict[tuple[str, ...], set[str]]:
    """Every catalog synonym and description (as words) -> the entries it names."""
    out: dict[tuple[str, ...], set[str]] = {}
    for name, entry in load_catalog().items():
        for phrase in (*entry.synonyms, *entry.descriptions):
            out.setdefault(tuple(lexicon.words(phrase.removeprefix("the "))), set()).add(name)
    return out


CATALOG = load_catalog()
KIND_PHRASES = _kind_phrases()
LONGEST_KIND = max(len(p) for p in KIND_PHRASES)
NOUN_ENTRIES = {n: {name for name, e in load_catalog().items() if n in e.synonyms} for n in NOUNS}
assert all(NOUN_ENTRIES.values())
# What an object the model names by a noun is: "ball" covers the soccer ball too, but the model names that one
# "soccer ball", so an object it calls a "ball" is one of the coloured balls (the entries no narrower noun names).
NOUN_KINDS = {n: e - set().union(*(f for m, f in NOUN_ENTRIES.items() if f < e)) for n, e in NOUN_ENTRIES.items()}


def said_kinds(text: str, colour: bool = False) -> set[str]:
    """The catalog entries the text names by a synonym or description, longest phrases first ("the round block"
    is a cylinder, not a cube), box names and landmarks aside; empty when it names no kind ("the blue item").
    With `colour`, only the entries of the colour the other words say ("the green duck": none)."""
    mentions, _, rest = _kind_mentions(text)
    found = set().union(*(entries for _, entries in mentions))
    said = {w for w in rest if w in lexicon.PALETTE}
    if colour and len(said) == 1:
        found = {name for name in found if load_catalog()[name].color in said}
    return found


def names_two_objects(text: str) -> bool:
    """Does the text name objects on both sides of an "and" ("the red cube and the duck", "the duck in the top right
    box and the red cube in the bottom left box")? "pick up the duck and put it in ..." names one."""
    mentions, tokens, _ = _kind_mentions(text)
    return any(any(a < k for a, _ in mentions) and any(a > k for a, _ in mentions)
               for k, t in enumerate(tokens) if t == "and")


def _kind_mentions(text: str, whole: bool = False) -> tuple[list[tuple[int, set[str]]], list[str], list[str]]:
    """Where the text names a kind of object: (position in the words without box names, the entries it names); those
    words; and the words in no kind phrase. "box" next to a box name is that box ("the top right box", "that box,
    top right"), not a cube. A relation's landmark names another object: its kind and colour are not the target's
    ("the duck next to the red cube" names a duck), so only the words without the relation are read. With `whole`,
    every kind the words name, landmarks included ("get hold of the cube" reads "of the cube" as a landmark)."""
    if not whole and (relation := relations.parse(text)) is not None:
        text = relation.rest
    all_tokens, spans = lexicon.words(text), lexicon.box_spans(text)
    drop = {k for a, b, _ in spans for k in range(a, b + 1)}
    beside = {k for a, b, _ in spans for k in (a - 1, b + 1)}
    kept = [(k, t) for k, t in enumerate(all_tokens) if k not in drop]
    tokens = [t for _, t in kept]
    mentions, i, rest = [], 0, []
    while i < len(tokens):
        for n in range(min(LONGEST_KIND, len(tokens) - i), 0, -1):
            phrase = tuple(tokens[i:i + n])
            if phrase in KIND_PHRASES:
                after, before = tokens[i + n:i + n + 1], [t for t in tokens[max(0, i - 2):i] if t != "the"]
                other_sense = len(phrase) == 1 and phrase[0] in NOUN_ONLY_AFTER and \
                    tokens[i - 1:i] not in [[w] for w in NOUN_ONLY_AFTER[phrase[0]]]
                coloured = bool(tokens[i - 1:i]) and tokens[i - 1] in lexicon.PALETTE   # "the red box top left": a cube
                placed = tokens[i - 1:i] == ["the"] and bool({*before[-1:], *after} & PLACE_PREPOSITIONS)
                container = phrase == ("box",) and not coloured and (kept[i][0] in beside or placed)
                # A landmark ("to the left of the duck", "on the duck's left") names another object.
                landmark = before[-1:] == ["of"] or after == ["s"]
                if not (other_sense or container or landmark and not whole):
                    mentions.append((i, KIND_PHRASES[phrase]))
                i += n
                break
        else:
            rest.append(tokens[i])
            i += 1
    return mentions, tokens, rest


def converse(grounder, objects: list[PerceivedObject], instruction: str, answers: list[str],
             settings: Settings | None = None) -> tuple[Dialogue, Reply]:
    """Play a whole dialogue: the instruction, then each answer in turn while the robot keeps asking."""
    d = Dialogue(grounder, objects, settings)
    reply = d.start(instruction)
    pending = list(answers)
    while reply.status == "question" and pending:
        reply = d.answer(pending.pop(0))
    return d, reply
