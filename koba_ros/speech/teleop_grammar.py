"""A JSGF grammar of the teleop commands, searched alongside the domain n-gram LM.

The domain trigram learns how often each word follows its context, and "two" is more frequent in
the teleop sentences than "ten" ("move the arm left two centimeters"...), so acoustically close
numbers drift towards "two" ("up ten centimeters" → "up two centimeters"). A grammar has no such
counts: every number is one equally likely branch, and the acoustics alone pick it. The grammar
covers exactly the sentences of koba_ros.teleop.commands.teleop_phrases (built from the same lists).
"""
from __future__ import annotations

from koba_ros.teleop.commands import (
    FIXED_PHRASES,
    SPOKEN_DIRECTIONS,
    SPOKEN_DISTANCES,
    SPOKEN_UNITS,
    spoken_number,
)


def alternatives(words) -> str:
    return "(" + " | ".join(words) + ")"


def teleop_jsgf() -> str:
    numbers = [spoken_number(n) for n in SPOKEN_DISTANCES if n != 1]
    other_units = [u for u in SPOKEN_UNITS if u != "centimeter"]
    return "\n".join([
        "#JSGF V1.0;",
        "grammar teleop;",
        f"<direction> = {alternatives(SPOKEN_DIRECTIONS)};",
        f"<distance> = one centimeter | {alternatives(numbers)} centimeters;",
        f"<any_distance> = <distance> | {alternatives(numbers)} {alternatives(other_units)};",
        "<jog> = [move] <direction> <distance> | go <direction> <any_distance> | move <distance> <direction>"
        " | move <direction> a little | move the arm <direction> two centimeters | move <direction> half a centimeter;",
        f"public <command> = <jog> | {' | '.join(FIXED_PHRASES)};",
        "",
    ])
