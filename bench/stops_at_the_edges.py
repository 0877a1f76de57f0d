"""A person's utterance across a change of the robot's speaking state (session 26): before and after, in one process.

speech_node hears only an early "stop" while the robot talks. An utterance in progress when the robot started or
stopped talking used to be dropped, and its rest decoded as a new utterance; since session 26 it runs on, marked as
overlapping the robot's voice, and only an early stop can come out of it. Arms, each its own recogniser stream fed the
same audio in 30 ms chunks:
  - before: `drop_at_speaking_change=True` (sessions 24-25);
  - after: the default since session 26;
  - control: the same clip with the speaking state off throughout (the recogniser on the whole utterance).
Clips: a person's stops and teleop commands (espeak-ng, 4 voices), the speaking state changing 0.05-0.4 s after the
speech's onset, as the robot falls silent or starts talking (no robot voice in the microphone: a headset, or its echo
already cancelled). Measured: stops heard; commands published as another command than the one said.
Rules written first: docs/speech/session26_edges_rules.md (seed 0's run of commit 25ddd7d also measured stops from
steady-noise segments, rejected there).

    cd bench && PYTHONPATH=..:. ../.venv/bin/python stops_at_the_edges.py [--seed 1] [--json OUT]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
from robot_voice_false_stops import PERSON_VOICES, STOPS, speech

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.teleop.commands import parse_command

ARMS = {"before": {"drop_at_speaking_change": True}, "after": {}, "control": {}}
VOICES = (*PERSON_VOICES, "en-us")
COMMANDS = ("move left five centimeters", "open the gripper", "go up ten centimeters", "move right two centimeters",
            "close the gripper", "go down five centimeters")
CUTS_S = (0.05, 0.1, 0.2, 0.3, 0.4)
DIRECTIONS = {"falls_silent": (True, False), "starts_talking": (False, True)}


def feed(stream: SpeechStream, audio: np.ndarray, changes: dict[int, bool]) -> list[str]:
    """The texts published; `changes` maps a sample index (a multiple of 480) to a speaking state set there."""
    out = []
    for i in range(0, len(audio), 480):
        if i in changes:
            stream.set_speaking(changes[i])
        out += [u.text for u in stream.feed(audio[i:i + 480])]
    stream.set_speaking(False)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    return out + [u.text for u in stream.feed(pad)] + [u.text for u in stream.flush()]


def command_of(text: str):
    try:
        return parse_command(text)
    except KobaError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="orders the clips (seed 0 ran at commit 25ddd7d)")
    parser.add_argument("--json", default="", help="also write the result here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    pad = np.zeros(RATE // 2, dtype=np.int16)
    streams = {arm: SpeechStream(PocketsphinxRecognizer(), **options) for arm, options in ARMS.items()}
    result = {arm: {"stop_at_change": {d: {str(c): 0 for c in CUTS_S} for d in DIRECTIONS},
                    "stop_by_voice": {v: 0 for v in VOICES},
                    "command_at_change": {"as_said": 0, "other_command": 0, "nothing_or_no_command": 0},
                    "which": []} for arm in ARMS}
    trials = [(v, said, cut, d) for v in VOICES for said in (*STOPS, *COMMANDS) for cut in CUTS_S for d in DIRECTIONS]
    random.Random(args.seed).shuffle(trials)   # the recognisers' running state depends on what came before
    clips = {(v, said): speech(said, v, folder) for v in VOICES for said in (*STOPS, *COMMANDS)}
    for voice, said, cut, direction in trials:
        clip = clips[voice, said]
        onset = int(np.argmax(np.abs(clip) > 300))
        audio = np.concatenate([pad, clip, pad])
        at = (len(pad) + onset + int(cut * RATE)) // 480 * 480
        first, then = DIRECTIONS[direction]
        for arm, stream in streams.items():
            heard = feed(stream, audio, {} if arm == "control" else {0: first, at: then})
            r = result[arm]
            if said in STOPS:
                r["stop_at_change"][direction][str(cut)] += "stop" in heard
                r["stop_by_voice"][voice] += "stop" in heard
                continue
            commands = [c for c in map(command_of, heard) if c is not None]
            expected = command_of(said)
            key = ("other_command" if any(c != expected for c in commands) else
                   "as_said" if commands else "nothing_or_no_command")
            r["command_at_change"][key] += 1
            if key == "other_command":
                r["which"].append([voice, said, cut, direction, heard])
    for r in result.values():
        r["stop_at_change_total"] = sum(sum(v.values()) for v in r["stop_at_change"].values())
    out = {"seed": args.seed, "voices": VOICES, "stops_per_cut_and_direction": len(VOICES) * len(STOPS),
           "commands_per_arm": len(VOICES) * len(COMMANDS) * len(CUTS_S) * len(DIRECTIONS), "result": result}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
