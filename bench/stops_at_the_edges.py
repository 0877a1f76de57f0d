"""Stops at the edges of SpeechStream's rules (session 26): before and after, in one process.

Two arms, each its own recogniser stream fed the same audio in 30 ms chunks:
  - before: `drop_at_speaking_change=True, stops_from_steady_noise=False` (sessions 24-25);
  - after: the defaults since session 26.
Cases (rules written first: docs/speech/session26_edges_rules.md):
  A. steady noise: 24 s runs of pure steady noise (white, pink, brown, a hum with harmonics; three levels, two runs
     each) must give no more stops than before; a person's stop said over steady noise as loud as the voice (0 dB)
     should be heard.
  B. the robot's speaking state changing inside a person's utterance: a stop said as the robot falls silent or
     starts talking, the change 0.05-0.4 s after the stop's onset, should be heard; a command said across the change
     must never come out as another command.

    cd bench && PYTHONPATH=..:. ../.venv/bin/python stops_at_the_edges.py [--seed 0] [--json OUT]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from robot_voice_false_stops import PERSON_VOICES, STOPS, speech

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.teleop.commands import parse_command

ARMS = {"before": {"drop_at_speaking_change": True, "stops_from_steady_noise": False}, "after": {}}
NOISES = ("white", "pink", "brown", "hum")
VOICES = (*PERSON_VOICES, "en-us")
COMMANDS = ("move left five centimeters", "open the gripper", "go up ten centimeters")
CUTS_S = (0.05, 0.1, 0.2, 0.3, 0.4)


def steady_noise(kind: str, seconds: float, rms: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    if kind == "hum":   # a fan or transformer: mains harmonics and a little hiss
        t = np.arange(n) / RATE
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / k for k, f in enumerate((50, 100, 150, 200), 1))
        x = x + 0.1 * rng.standard_normal(n)
    else:
        power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= f[1:] ** (power / 2)
        spectrum[0] = 0
        x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x ** 2)) * rms


def active_rms(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.sqrt(np.mean(x[np.abs(x) > 100] ** 2)))


def feed(stream: SpeechStream, audio: np.ndarray, changes: dict[int, bool] | None = None) -> list[str]:
    """The texts published; `changes` maps a sample index (a multiple of 480) to a speaking state set there."""
    changes = changes or {}
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the result here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(args.seed)
    streams = {arm: SpeechStream(PocketsphinxRecognizer(), **options) for arm, options in ARMS.items()}
    result = {arm: {"noise_false_stops": 0, "noise_utterances": 0, "stop_over_noise": {k: 0 for k in NOISES},
                    "stop_at_change": {"falls_silent": {str(c): 0 for c in CUTS_S},
                                       "starts_talking": {str(c): 0 for c in CUTS_S}},
                    "command_at_change": {"as_said": 0, "other_command": 0, "nothing_or_no_command": 0},
                    "which": []} for arm in ARMS}
    pad = np.zeros(RATE // 2, dtype=np.int16)
    # A1. pure steady noise: no stop may come out. 24 s of it without a break, as a fan runs: the endpointer cuts an
    # utterance at 10 s, so the later ones start inside the noise (the first one's pre-roll is silence)
    noise_segments = 0
    for kind in NOISES:
        for rms in (300.0, 1000.0, 3000.0):
            for _ in range(2):
                audio = np.clip(steady_noise(kind, 24.0, rms, rng), -32768, 32767).astype(np.int16)
                noise_segments += 1
                for arm, stream in streams.items():
                    heard = feed(stream, audio)
                    result[arm]["noise_utterances"] += len(heard)
                    if "stop" in heard:
                        result[arm]["noise_false_stops"] += heard.count("stop")
                        result[arm]["which"].append(["noise", kind, rms, heard])
    # A2. a stop over steady noise as loud as the voice
    stop_over_noise_n = 0
    for voice in VOICES:
        for said in STOPS:
            person = speech(said, voice, folder).astype(np.float64)
            for kind in NOISES:
                noise = steady_noise(kind, 6.0, active_rms(person), rng)
                start = 3 * RATE
                noise[start:start + len(person)] += person
                audio = np.clip(noise, -32768, 32767).astype(np.int16)
                stop_over_noise_n += 1
                for arm, stream in streams.items():
                    result[arm]["stop_over_noise"][kind] += "stop" in feed(stream, audio)
    # B. the speaking state changes inside the person's utterance (no robot voice in the microphone: a headset, or the
    # robot's voice already cancelled)
    stop_at_change_n = 0
    for voice in VOICES:
        for said in (*STOPS, *COMMANDS):
            clip = speech(said, voice, folder)
            onset = int(np.argmax(np.abs(clip) > 300))
            audio = np.concatenate([pad, clip, pad])
            for cut in CUTS_S:
                at = (len(pad) + onset + int(cut * RATE)) // 480 * 480
                for name, states in (("falls_silent", {0: True, at: False}), ("starts_talking", {0: False, at: True})):
                    if said in STOPS:
                        stop_at_change_n += name == "falls_silent"
                    for arm, stream in streams.items():
                        heard = feed(stream, audio, states)
                        if said in STOPS:
                            result[arm]["stop_at_change"][name][str(cut)] += "stop" in heard
                            continue
                        commands = [c for c in map(command_of, heard) if c is not None]
                        expected = command_of(said)
                        key = ("other_command" if any(c != expected for c in commands) else
                               "as_said" if commands else "nothing_or_no_command")
                        result[arm]["command_at_change"][key] += 1
                        if key == "other_command":
                            result[arm]["which"].append(["command_at_change", voice, said, cut, name, heard])
    for arm in ARMS:
        r = result[arm]
        r["stop_over_noise_total"] = sum(r["stop_over_noise"].values())
        r["stop_at_change_total"] = sum(sum(v.values()) for v in r["stop_at_change"].values())
    out = {"seed": args.seed, "noise_runs_of_24_s": noise_segments,
           "stop_over_noise_n_per_kind": stop_over_noise_n // len(NOISES),
           "stop_at_change_n_per_cut_and_direction": stop_at_change_n // len(CUTS_S), "voices": VOICES,
           "result": result}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
