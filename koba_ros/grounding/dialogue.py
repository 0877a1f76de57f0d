"""Clarification dialogue: decide from calibrated probabilities whether to act, ask or refuse; ask a
question that names what tells the candidates apart; understand the answer; give up after max_turns.

Hatori et al. (ICRA 2018) ask when the top candidates score too close; here the test is on the
temperature-calibrated probability: act when the best object has p >= ask_below, refuse when "none of
them" is most likely, otherwise ask about the few objects holding most of the mass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from koba_ros.grounding import lexicon
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import load_catalog

MAX_CHARS = 400
NOUNS = ("duck", "teddy bear", "mug", "soccer ball", "lego brick", "jenga block", "domino", "cube", "ball",
         "cylinder")


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

    # --- turns ---------------------------------------------------------------------------------
    def start(self, instruction: str) -> Reply:
        text = _clean(instruction)
        self.history.append({"role": "user", "text": text})
        if not any(c.isalpha() for c in text):
            return self._end("rejected", "I didn't catch an instruction. "
                                         "Tell me which object to move and to which box.")
        if lexicon.is_cancel(text) and len(lexicon.words(text)) <= 3:
            return self._end("cancelled", "Okay, I won't move anything.")
        if not self.objects:
            return self._end("rejected", "I don't see any objects, so I won't move anything.")
        g = self.grounder.ground(text, self.objects)
        ranked = g.ranked()
        best, p_best = ranked[0]
        dest, p_dest = g.destination
        if dest is not None and p_dest >= self.s.dest_ask_below:
            self.destination = dest
        if g.none_prob >= self.s.reject_above and g.none_prob > p_best:
            return self._end("rejected", "I can't find that object here, so I won't move anything.")
        if p_best >= self.s.ask_below:
            self.target, self.confidence = best, p_best
        else:
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
        if lexicon.is_cancel(text):
            return self._end("cancelled", "Okay, I won't move anything.")
        if self.pending == "destination":
            box = lexicon.parse_box(text)
            if box is None and any(c.isalpha() for c in text):
                dest, p = self.grounder.ground(text, self.objects).destination
                box = dest if p >= self.s.dest_ask_below else None
            if box is not None:
                self.destination = box
            return self._next(understood=box is not None)
        if self.pending == "confirm":
            yes = lexicon.yes_no(text)
            if yes is True:
                self.target = self.candidates[0]
                return self._next()
            if yes is False:
                rest = [c for c in self.candidates[1:]]
                if not rest:
                    return self._end("rejected", "Sorry, then I don't know which object you mean, "
                                                 "so I won't move anything.")
                self.candidates = rest
                return self._next()
            # Neither yes nor no: read it as a new description among all objects.
            self.candidates = list(range(len(self.objects)))
        if self.pending in ("target", "confirm"):
            return self._next(understood=self._resolve(text))
        return self._next(understood=False)

    # --- deciding what to say --------------------------------------------------------------------
    def _next(self, understood: bool = True) -> Reply:
        if self.target is None:
            if self.questions >= self.s.max_turns:
                return self._give_up()
            self.questions += 1
            sorry = "" if understood else "Sorry, I didn't get that. "
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
        if self.destination is None:
            if self.questions >= self.s.max_turns:
                return self._give_up()
            self.questions += 1
            self.pending = "destination"
            sorry = "" if understood else "Sorry, I didn't get that. "
            return self._ask(sorry + "Which box should I put it in: top left, top right, bottom left or bottom right?")
        moving = self._phrases([self.target])[0].replace(" in the ", " from the ", 1)
        return self._end("done", f"Okay, I'll move {moving} to the {lexicon.box_words(self.destination)} box.")

    def _candidates(self, ranked) -> list[int]:
        mass = sum(p for _, p in ranked)
        out, acc = [], 0.0
        for i, p in ranked:
            out.append(i)
            acc += p
            if acc >= self.s.candidate_mass * mass or len(out) >= self.s.max_candidates:
                break
        return out

    def _resolve(self, text: str) -> bool:
        """Narrow the candidates with the answer (the ones named, else all possible); True when it helped."""
        k = lexicon.ordinal(text)
        if k is not None and -len(self.candidates) <= k < len(self.candidates) and len(lexicon.words(text)) <= 5:
            self.target = self.candidates[k]
            return True
        for cands in (self.candidates, self.pool):
            if len(cands) > 1 and self._narrow(text, cands):
                return True
        return False

    def _narrow(self, text: str, cands: list[int]) -> bool:
        box = lexicon.parse_box(text)
        narrowed = False
        if box is not None:
            in_box = [c for c in cands if self.objects[c].box == box]
            if in_box:
                cands, narrowed = in_box, True
        side = lexicon.side(text)
        if side and len(cands) > 1:
            if len(cands) == 2 or len({self.objects[c].box for c in cands}) == 1:
                x = {c: self.objects[c].bbox[0] + self.objects[c].bbox[2] / 2 for c in cands}
                cands, narrowed = [min(cands, key=x.get) if side == "left" else max(cands, key=x.get)], True
            elif [c for c in cands if self.objects[c].box.endswith(side)]:
                cands, narrowed = [c for c in cands if self.objects[c].box.endswith(side)], True
        if len(cands) > 1 and any(c.isalpha() for c in text) and not narrowed:
            # An attribute ("the blue one"): ground the answer among the candidates, keep those it fits.
            g = self.grounder.ground(text, [self.objects[c] for c in cands])
            ranked = g.ranked()
            if ranked[0][1] > g.none_prob:
                kept = [cands[j] for j, p in ranked if p >= 0.5 * ranked[0][1]]
                if len(kept) < len(cands):
                    cands, narrowed = kept, True
        if narrowed:
            self.candidates = self.pool = cands
            if len(cands) == 1:
                self.target = cands[0]
        return narrowed

    # --- words -----------------------------------------------------------------------------------
    def _names(self, idx: list[int]) -> dict[int, str]:
        """A noun for each object: the catalog noun whose words pick it out best (the model names it)."""
        texts = [f"the {n}" for n in NOUNS]
        grounded = self.grounder.ground_batch(texts, [self.objects] * len(texts))
        return {i: NOUNS[max(range(len(NOUNS)), key=lambda k: grounded[k].target_probs[i])] for i in idx}

    def _phrases(self, idx: list[int]) -> list[str]:
        """Descriptions that tell these objects apart: colour, noun, box, and side within a box."""
        names = self._names(idx)
        colour = {i: _colour(self.objects[i]) for i in idx}
        boxes = {i: self.objects[i].box for i in idx}
        out = []
        for n, i in enumerate(idx):
            parts = ["the"]
            same = [j for j in idx if j != i and colour[j] == colour[i] and names[j] == names[i]]
            if n == 0 or len({colour[j] for j in idx}) > 1:
                parts.append(colour[i])
            parts.append(names[i] if n == 0 or len({names[j] for j in idx}) > 1 else "one")
            if len(set(boxes.values())) > 1 or len(idx) == 1:
                parts.append(f"in the {lexicon.box_words(boxes[i])} box")
            twins = [j for j in same if boxes[j] == boxes[i]]
            if twins:
                x = lambda k: self.objects[k].bbox[0] + self.objects[k].bbox[2] / 2  # noqa: E731
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


def _clean(text) -> str:
    text = str(text or "")[:MAX_CHARS]
    return " ".join(text.split())


def _either(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _colour(obj: PerceivedObject) -> str:
    return lexicon.colour_name(obj.mean_rgb)


assert all(n in {s for e in load_catalog().values() for s in e.synonyms} for n in NOUNS)


def converse(grounder, objects: list[PerceivedObject], instruction: str, answers: list[str],
             settings: Settings | None = None) -> tuple[Dialogue, Reply]:
    """Play a whole dialogue: the instruction, then each answer in turn while the robot keeps asking."""
    d = Dialogue(grounder, objects, settings)
    reply = d.start(instruction)
    pending = list(answers)
    while reply.status == "question" and pending:
        reply = d.answer(pending.pop(0))
    return d, reply
