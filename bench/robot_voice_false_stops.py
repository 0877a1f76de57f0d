"""Listening for "stop" while the robot talks (session 24): what it costs and what it buys, in one process.

Two arms, on the same clips, each streamed in 30 ms chunks through SpeechStream with the speaking state set, as in
speech_node:
  - muted: the robot's voice time is silence to the recogniser (every session before 24);
  - stop_while_speaking: the real audio runs through, and only an early "stop" comes out (the default since 24).

Cost: false stops on the robot's own sentences: its teleop and grounding replies, clarifying questions of the
grounding dialogue's forms (dialogue.py _next, _phrases) and its announcements of a pick, with random colours, kinds
and boxes.
Benefit: a person's "stop" said over the robot's reply, as a loudspeaker and a microphone in one room mix them
(the two waveforms added; the person at the robot's level and at half of it), and alone (a headset, or the robot
between sentences while its speaking state is still set).

    cd bench && PYTHONPATH=..:. ../.venv/bin/python robot_voice_false_stops.py [--questions 30] [--seed 0]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np

from koba_ros.speech.audio import RATE, load_audio
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.speech.tts import Speaker

ROBOT_VOICES = ("en-us", "en-gb", "en-gb-x-rp")
PERSON_VOICES = ("en-us+m3", "en-gb+f3", "en-us+f2")
REPLIES = ("Holding still.", "Move cancelled.", "Okay, I won't move anything.", "Okay. Nothing is moving.",
           "Done.", "I couldn't finish: the object slipped.", "I can't reach the arm right now.",
           "Moved left 5 centimeters.", "Moved up 10 centimeters.", "Moved forward 20 centimeters.",
           "Opened the gripper.", "Closed the gripper.", "Back home.", "That is out of my reach.",
           "Please give the distance in one unit.", "Sorry, something went wrong; please try again.")
NOUNS = ("duck", "teddy bear", "mug", "soccer ball", "lego brick", "jenga block", "domino", "cube", "ball", "cylinder")
COLOURS = ("red", "green", "blue", "yellow", "white", "brown", "tan", "black")
BOXES = ("top left", "top right", "bottom left", "bottom right")
STOPS = ("stop", "stop moving", "please stop")


def phrase(rng: random.Random, where: str = "in") -> str:
    return f"the {rng.choice(COLOURS)} {rng.choice(NOUNS)} {where} the {rng.choice(BOXES)} box"


def announcements(n: int, rng: random.Random) -> list[str]:
    """grounding_node's words as a pick starts (dialogue.py _next): said while the goal is on its way, where a false
    stop would cancel the robot's own move."""
    return [f"Okay, I'll move {phrase(rng, 'from')} to the {rng.choice(BOXES)} box." for _ in range(n)]


def questions(n: int, rng: random.Random) -> list[str]:
    out = ["Which box should I put it in: top left, top right, bottom left or bottom right?",
           "Which object do you mean? Tell me its colour and its box."]
    while len(out) < n:
        k = rng.random()
        a, b, c = phrase(rng), phrase(rng), phrase(rng)
        out.append(f"Do you mean {a} or {b}?" if k < 0.4 else f"Do you mean {a}?" if k < 0.7
                   else f"Do you mean {a}, {b} or {c}?" if k < 0.85
                   else f"{rng.choice([2, 3])} objects could fit, in the {rng.choice(BOXES)} box. "
                        "Which one do you mean?")
    return out


def speech(text: str, voice: str, folder: Path) -> np.ndarray:
    Speaker(voice, 160, play=False).synthesize(text, folder / "s.wav")
    return load_audio(folder / "s.wav")


def heard_while_speaking(stream: SpeechStream, audio: np.ndarray, muted: bool) -> list[str]:
    pad = np.zeros(RATE // 2, dtype=np.int16)
    stream.set_speaking(True)
    fed = np.zeros_like(audio) if muted else audio
    out = [u.text for i in range(0, len(fed), 480) for u in stream.feed(fed[i:i + 480])]
    stream.set_speaking(False)
    return out + [u.text for u in stream.feed(pad)] + [u.text for u in stream.flush()]


def mix(person: np.ndarray, robot: np.ndarray, person_gain: float, offset_s: float) -> np.ndarray:
    start = int(offset_s * RATE)
    n = max(len(robot), start + len(person))
    out = np.zeros(n, dtype=np.float64)
    out[:len(robot)] += robot
    out[start:start + len(person)] += person_gain * person
    return np.clip(out, -32768, 32767).astype(np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    pad = np.zeros(RATE // 2, dtype=np.int16)
    rng = random.Random(args.seed)
    robot_texts = {"reply": list(REPLIES), "question": questions(args.questions, rng),
                   "announcement": announcements(args.questions, rng)}
    arms = {"muted": True, "stop_while_speaking": False}
    streams = {arm: SpeechStream(PocketsphinxRecognizer()) for arm in arms}
    result = {arm: {"false_stops": {kind: 0 for kind in robot_texts}, "which": [],
                    "stop_heard": {"alone": 0, "over_robot_same_level": 0, "over_robot_half_level": 0}}
              for arm in arms}
    for voice in ROBOT_VOICES:
        for kind, texts in robot_texts.items():
            for text in texts:
                audio = np.concatenate([pad, speech(text, voice, folder), pad])
                for arm, muted in arms.items():
                    if "stop" in heard_while_speaking(streams[arm], audio, muted):
                        result[arm]["false_stops"][kind] += 1
                        result[arm]["which"].append([voice, text])
    reply = speech("Moving forward 20 centimeters.", "en-us", folder)
    for voice in PERSON_VOICES:
        for text in STOPS:
            person = speech(text, voice, folder)
            clips = {"alone": np.concatenate([pad, person, pad]),
                     "over_robot_same_level": np.concatenate([pad, mix(person, reply, 1.0, 0.4), pad]),
                     "over_robot_half_level": np.concatenate([pad, mix(person, reply, 0.5, 0.4), pad])}
            for name, audio in clips.items():
                for arm, muted in arms.items():
                    result[arm]["stop_heard"][name] += "stop" in heard_while_speaking(streams[arm], audio, muted)
    print(json.dumps({"robot_voices": ROBOT_VOICES, "robot_clips": {k: len(v) * len(ROBOT_VOICES)
                                                                     for k, v in robot_texts.items()},
                      "person_stop_clips_per_condition": len(PERSON_VOICES) * len(STOPS), "seed": args.seed,
                      "arms": result}))


if __name__ == "__main__":
    main()
