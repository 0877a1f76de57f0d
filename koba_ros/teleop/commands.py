"""Spoken teleop commands: "move left five centimeters", "up 10 cm", "open the gripper", "go home", "stop".

parse_command turns recognised text into a Jog, Gripper, Home or Stop; anything else raises KobaError
with a sentence the robot can say back. teleop_phrases() generates the sentences the ASR's domain
language model is trained on, from the same word lists, so parser and recogniser never disagree.

Directions are in base_link (REP-103): x forward (away from the robot), y left, z up.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from koba_ros.errors import KobaError

# A clear "stop moving" comes as an early "stop" and then the utterance's own result (0.5-1.3 s later: espeak-ng,
# 2-4 words); answering both kept the robot talking, hearing only early stops, for a second more (session 30).
# teleop_node answers a stop within this of the last answered one only once; tts_node keeps that answer (one value).
STOP_REPEAT_S = 3.0

DIRECTIONS = {
    "left": (0.0, 1.0, 0.0), "right": (0.0, -1.0, 0.0),
    "forward": (1.0, 0.0, 0.0), "forwards": (1.0, 0.0, 0.0), "ahead": (1.0, 0.0, 0.0),
    "back": (-1.0, 0.0, 0.0), "backward": (-1.0, 0.0, 0.0), "backwards": (-1.0, 0.0, 0.0),
    "up": (0.0, 0.0, 1.0), "down": (0.0, 0.0, -1.0),
}
UNITS = {
    "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001, "millimetres": 0.001, "mm": 0.001,
    "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01, "centimetres": 0.01, "cm": 0.01,
    "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "m": 1.0,
    "inch": 0.0254, "inches": 0.0254,
}
DEFAULT_UNIT = "centimeters"   # "move left five" means five centimeters
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
NUMBER_WORDS = {**{w: i for i, w in enumerate(ONES)}, **TENS, "a": 1, "an": 1, "hundred": 100, "half": 0.5,
                "and": 0, "point": 0}
DIGITS = r"\d*\.?\d+"
MAX_CHARS = 200   # a spoken command is a few words; a longer "command" is a mistake (or an attack) upstream
FILLER = {"please", "the", "arm", "robot", "gripper", "hand", "move", "go", "jog", "by", "of", "it", "now", "a", "bit",
          "little", "okay", "ok", "then", "can", "you"}


@dataclass(frozen=True)
class Jog:
    direction: tuple[float, float, float]   # unit vector in base_link
    distance: float                          # metres
    words: str                               # how it was said, for the spoken reply


@dataclass(frozen=True)
class Gripper:
    open: bool


@dataclass(frozen=True)
class Home:
    pass


@dataclass(frozen=True)
class Stop:
    pass


Command = Jog | Gripper | Home | Stop


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers; "5cm" → ["5", "cm"], "2.5" and ".5" stay one token."""
    # A sign before a number ("up -5 cm") is the word minus, which a distance refuses; other hyphens join words
    # ("twenty-five").
    text = re.sub(r"(?<![\w.])-(?=\.?\d)", " minus ", text.lower()).replace("-", " ")
    return re.findall(DIGITS + r"|[a-z]+", text)   # ".5" used to lose its point and move 5 cm


def whole_number(words: list[str]) -> int | None:
    """A well-formed whole number in words: "seven", "twenty five", "a hundred", "one hundred and five"; None for
    sequences no one says for one number ("five five", "five twenty", "twenty twenty", "hundred hundred")."""
    if "hundred" in words:
        i = words.index("hundred")
        if words[:i] not in ([], ["a"], ["an"]) and not (i == 1 and words[0] in ONES[1:10]):
            return None
        rest = words[i + 1:]
        rest = rest[1:] if rest[:1] == ["and"] else rest
        if "hundred" in rest or (not rest and words[i + 1:]):   # "hundred hundred", "a hundred and"
            return None
        below = whole_number(rest) if rest else 0   # one level deep at most: rest has no "hundred"
        return None if below is None else (ONES.index(words[0]) if words[:i] and words[0] in ONES else 1) * 100 + below
    if words in (["a"], ["an"]):                                          # "a centimeter"
        return 1
    if len(words) == 1 and words[0] in ONES:
        return ONES.index(words[0])
    if len(words) == 1 and words[0] in TENS:
        return TENS[words[0]]
    if len(words) == 2 and words[0] in TENS and words[1] in ONES[1:10]:  # tens then ones
        return TENS[words[0]] + ONES.index(words[1])
    return None


def parse_number(words: list[str]) -> float | None:
    """Digits ("12", "2.5", ".5") or words ("twenty five", "a hundred", "one and a half", "two point five"); None for
    anything else, so a garbled number is refused rather than summed into a distance no one said."""
    if len(words) == 1 and re.fullmatch(DIGITS, words[0]):
        value = float(words[0])
        return value if math.isfinite(value) else None
    if not words or any(w not in NUMBER_WORDS for w in words):
        return None
    if words[0] == "half" and words[1:] in ([], ["a"], ["an"]):          # "half a centimeter", "half"
        return 0.5
    if words[-1] == "half":                                               # "one and a half", "a half"
        whole = words[:-1]
        whole = whole[:-1] if whole[-1:] in (["a"], ["an"]) else whole
        if not whole:
            return 0.5
        if whole[-1] != "and" or len(whole) < 2:
            return None
        base = whole_number(whole[:-1])                                   # "a centimeter and a half": a = 1
        return None if base is None else base + 0.5
    if "point" in words:                                                  # "two point five"
        i = words.index("point")
        whole, digits = whole_number(words[:i]), words[i + 1:]
        if whole is None or not digits or any(w not in ONES[:10] for w in digits):
            return None
        return whole + float("0." + "".join(str(ONES.index(w)) for w in digits))
    number = whole_number(words)
    return None if number is None else float(number)


OPEN_WORDS, CLOSE_WORDS = frozenset({"open", "release"}), frozenset({"close", "grasp", "grip"})
DETERMINERS = frozenset({"the", "your", "my"})   # "release the grip": a grip after one is a noun, not "close"
OBJECT_WORDS = DETERMINERS | {"it", "gripper", "hand", "fingers"}   # what stands between a verb and its particle
TO_HOME = DETERMINERS | {"to"}   # what may stand between "back" and "home": "go back to your home position"


def home_follows(words: list[str]) -> bool:
    """Is `words` (what follows a "back") the way to a "home": "home", "to the home position"?"""
    k = 0
    while k < len(words) and words[k] in TO_HOME:
        k += 1
    return words[k:k + 1] == ["home"]


def command_kinds(words: list[str]) -> set[str]:
    """The commands `words` ask for: "open", "close", "home", "jog". A direction that belongs to another command's
    words is no jog: "back" on the way to a "home" ("go back home", "move back to the home position"; not "go back
    5 cm and go home", two commands), or a particle
    after an open/close verb and its object ("open it up", "open the gripper up")."""
    said = {w for i, w in enumerate(words) if not (w == "grip" and i and words[i - 1] in DETERMINERS)}
    kinds = {kind for kind, vocabulary in (("open", OPEN_WORDS), ("close", CLOSE_WORDS), ("home", {"home"}))
             if vocabulary & said}
    for i, w in enumerate(words):
        j = i - 1
        while j >= 0 and words[j] in OBJECT_WORDS:
            j -= 1
        particle = (j >= 0 and words[j] in OPEN_WORDS | CLOSE_WORDS) or (w == "back" and home_follows(words[i + 1:]))
        if w in DIRECTIONS and not particle:
            kinds.add("jog")
    return kinds


# "cancel" and "abort" too, as grounding_node hears them (lexicon.CANCEL): one person may use both graphs' words.
STOP_WORDS = frozenset({"stop", "halt", "freeze", "cancel", "abort"})


def parse_command(text: str) -> Command:
    """The teleop command in `text`, or KobaError with a reply the robot can speak."""
    words = tokens(text)
    if not words:
        raise KobaError("I did not hear a command.")
    if STOP_WORDS & set(words):
        return Stop()   # stop wins over anything else said in the same breath
    if len(text) > MAX_CHARS:
        raise KobaError(f"That is too long for a command ({len(text)} characters); please say it in a few words.")
    kinds = command_kinds(words)
    if len(kinds) > 1:   # "close the gripper and move up five centimeters" used to close it and drop the jog silently
        raise KobaError("Please give one command at a time.")
    if "open" in kinds:
        return Gripper(open=True)
    if "close" in kinds:
        return Gripper(open=False)
    if "home" in kinds:
        return Home()
    dirs = [w for w in words if w in DIRECTIONS]
    if not dirs:
        raise KobaError(f"I did not understand \"{' '.join(words)}\".")
    if len(set(DIRECTIONS[w] for w in dirs)) > 1:
        raise KobaError("Please give one direction at a time.")
    units = [w for w in words if w in UNITS]
    if len(set(UNITS[u] for u in units)) > 1:   # "two centimeters and five millimeters" used to move 7 cm
        raise KobaError("Please give the distance in one unit.")
    rest = [w for w in words if w not in DIRECTIONS and w not in UNITS and (w not in FILLER or w in NUMBER_WORDS)]
    number = parse_number(rest) if rest else None
    if number is None:
        if rest:
            raise KobaError(f"I did not understand the distance \"{' '.join(rest)}\".")
        raise KobaError(f"How far should I move {dirs[0]}?")
    unit = units[0] if units else DEFAULT_UNIT
    distance = number * UNITS[unit]
    if distance <= 0:
        raise KobaError("The distance must be more than zero.")
    return Jog(DIRECTIONS[dirs[0]], distance, f"{dirs[0]} {format_number(number)} {unit}")


def format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def spoken_number(n: int) -> str:
    """0..100 in words, as the language model should expect them."""
    if n < 20:
        return ONES[n]
    if n == 100:
        return "one hundred"
    tens = {v: k for k, v in TENS.items()}[n // 10 * 10]
    return tens if n % 10 == 0 else f"{tens} {ONES[n % 10]}"


# The spoken forms the ASR expects (its domain LM and the teleop grammar are both built from these).
SPOKEN_DIRECTIONS = ("left", "right", "forward", "back", "backward", "up", "down")
SPOKEN_UNITS = ("centimeters", "centimeter", "millimeters", "meters", "inches")
SPOKEN_DISTANCES = (*range(1, 21), 25, 30, 40, 50, 60, 70, 80, 90, 100)
# Every stop word alone and after "please" ("stop" also doubled and in "stop moving"): the recogniser hears only words
# its domain LM has seen, and with "stop" alone there, "halt", "freeze", "cancel" and "abort" could never be heard.
STOP_PHRASES = (*sorted(STOP_WORDS), *(f"please {w}" for w in sorted(STOP_WORDS)), "stop stop", "stop moving")
FIXED_PHRASES = ("open the gripper", "close the gripper", "open gripper", "close gripper", "open the hand",
                 "close the hand", "go home", "move home", "go back home", "return home", *STOP_PHRASES)


def teleop_phrases() -> list[str]:
    """Sentences people say to jog the arm; the ASR's domain language model is trained on them."""
    numbers = [spoken_number(n) for n in SPOKEN_DISTANCES]
    phrases = []
    for d in SPOKEN_DIRECTIONS:
        for n in numbers:
            unit = "centimeter" if n == "one" else "centimeters"
            phrases += [f"move {d} {n} {unit}", f"{d} {n} {unit}", f"go {d} {n} {unit}", f"move {n} {unit} {d}"]
            phrases += [f"go {d} {n} {u}" for u in SPOKEN_UNITS if u != "centimeter" and n != "one"]
        phrases += [f"move {d} a little", f"move the arm {d} two centimeters", f"move {d} half a centimeter"]
    return phrases + list(FIXED_PHRASES)


def is_stop(text: str) -> bool:
    """Does `text` say stop? (The one command that must get through whatever its confidence.)"""
    try:
        return isinstance(parse_command(text), Stop)
    except KobaError:
        return False
