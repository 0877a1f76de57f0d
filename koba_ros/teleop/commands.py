"""Spoken teleop commands: "move left five centimeters", "up 10 cm", "open the gripper", "go home", "stop".

parse_command turns recognised text into a Jog, Gripper, Home or Stop; anything else raises KobaError
with a sentence the robot can say back. teleop_phrases() generates the sentences the ASR's domain
language model is trained on, from the same word lists, so parser and recogniser never disagree.

Directions are in base_link (REP-103): x forward (away from the robot), y left, z up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from koba_ros.errors import KobaError

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
    """Lower-case words and numbers; "5cm" → ["5", "cm"], "2.5" stays one token."""
    # A sign before a number ("up -5 cm") is the word minus, which a distance refuses; other hyphens join words
    # ("twenty-five").
    text = re.sub(r"(?<![\w.])-(?=\d)", " minus ", text.lower()).replace("-", " ")
    return re.findall(r"\d+(?:\.\d+)?|[a-z]+", text)


def parse_number(words: list[str]) -> float | None:
    """Digits ("12", "2.5") or words ("twenty five", "a hundred", "one and a half", "two point five")."""
    if len(words) == 1 and re.fullmatch(r"\d+(?:\.\d+)?", words[0]):
        return float(words[0])
    if not words or any(w not in NUMBER_WORDS for w in words):
        return None
    if words[0] == "half" and words[1:] in ([], ["a"], ["an"]):          # "half a centimeter"
        return 0.5
    if words[-1] == "half":                                               # "one and a half", "a half"
        whole = [w for w in words[:-1] if w not in ("and", "a", "an")]
        base = parse_number(whole) if whole else 0.0
        return None if base is None else base + 0.5
    if "point" in words:                                                  # "two point five"
        i = words.index("point")
        whole, digits = parse_number(words[:i]), words[i + 1:]
        if whole is None or not digits or any(w not in ONES[:10] for w in digits):
            return None
        return whole + float("0." + "".join(str(ONES.index(w)) for w in digits))
    if words in (["a"], ["an"]):                                          # "a centimeter"
        return 1.0
    total = 0.0
    for w in words:
        if w == "hundred":
            total = (total or 1) * 100
        elif w in ("a", "an", "and", "half", "point"):
            continue
        else:
            total += NUMBER_WORDS[w]
    return total


def parse_command(text: str) -> Command:
    """The teleop command in `text`, or KobaError with a reply the robot can speak."""
    words = tokens(text)
    if not words:
        raise KobaError("I did not hear a command.")
    if "stop" in words or "halt" in words or "freeze" in words:
        return Stop()   # stop wins over anything else said in the same breath
    if "open" in words or "release" in words:
        return Gripper(open=True)
    if "close" in words or "grasp" in words or "grip" in words:
        return Gripper(open=False)
    if "home" in words:
        return Home()
    dirs = [w for w in words if w in DIRECTIONS]
    if not dirs:
        raise KobaError(f"I did not understand \"{' '.join(words)}\".")
    if len(set(DIRECTIONS[w] for w in dirs)) > 1:
        raise KobaError("Please give one direction at a time.")
    units = [w for w in words if w in UNITS]
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
FIXED_PHRASES = ("open the gripper", "close the gripper", "open gripper", "close gripper", "open the hand",
                 "close the hand", "go home", "move home", "go back home", "return home", "stop", "stop stop",
                 "stop moving", "please stop")


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
