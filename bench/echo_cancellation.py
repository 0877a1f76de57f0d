"""Acoustic echo cancellation (session 25): a person's "stop" over the robot's loudspeaker voice, without and with
the echo canceller, in one process.

The robot's sentences (espeak-ng, as tts_node says them) reach the microphone through a synthetic room: a delay of
10-60 ms (the sound cards' buffers and the distance), then an exponentially decaying noise tail (RT60 0.2-0.4 s),
scaled so that the echo is as loud as the person (level 1.0) or twice as loud (0.5); low white noise 45 dB under the
echo. Each room is one session: its canceller starts empty and runs on everything the microphone hears, in order.
Arms, each with its own recogniser stream (SpeechStream, speaking state set while the robot talks, as speech_node):
  - no_aec: the microphone as it is (session 24);
  - aec: the microphone through EchoCanceller, the played sentence as its reference.
Measured: ERLE per robot sentence (robot alone; sentences 4 on = after convergence), false stops on the robot's own
sentences, stops heard over the robot (sentences x 3 person voices x 2 levels), stops said 0.5 s into the first
sentence of a fresh session (before the filter converges), stops alone (must not drop), the person's commands over
the robot (double talk: recognised as when said alone?, and the person-to-residual-echo ratio), and the canceller's
CPU time per second of audio.

With --kept-path, only the first-sentence case, with the echo path kept between runs (`EchoCanceller.save/load`,
speech_node's `echo_path_file`): per room an "earlier session" of --train robot sentences trains a canceller that is
saved to a file; then every trial is a new session on the robot's first sentence (3 per room, one per person voice),
with arms no_aec, aec_fresh (an empty filter), aec_kept (the path of the earlier session in the same room) and
aec_other_room (the path of the next room: other delay and RT60). Measured: a stop 0.5 s into the first sentence at
both levels, false stops and ERLE on the first sentences alone, blocks where the output is louder than the microphone.

    cd bench && PYTHONPATH=..:. ../.venv/bin/python echo_cancellation.py [--seed 0] [--sentences 14] [--json OUT]
    cd bench && PYTHONPATH=..:. ../.venv/bin/python echo_cancellation.py --kept-path [--train 6] [--json OUT]

Prints one JSON object. Reuses the clips and helpers of robot_voice_false_stops.py.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from robot_voice_false_stops import (
    PERSON_VOICES,
    REPLIES,
    ROBOT_VOICES,
    STOPS,
    announcements,
    heard_while_speaking,
    questions,
    speech,
)

from koba_ros.speech.audio import RATE
from koba_ros.speech.echo_canceller import EchoCanceller
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream

ROOMS = ({"delay_ms": 15, "rt60_s": 0.2}, {"delay_ms": 35, "rt60_s": 0.3}, {"delay_ms": 55, "rt60_s": 0.4})
COMMANDS = ("move left five centimeters", "open the gripper", "go up ten centimeters")
LEVELS = {"same_level": 1.0, "half_level": 0.5}


def room_response(delay_ms: float, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A loudspeaker-to-microphone impulse response: the direct sound after `delay_ms`, an exponentially decaying
    noise tail reaching -60 dB after `rt60_s`; unit energy."""
    k, n = int(delay_ms * RATE / 1000), int(rt60_s * RATE)
    h = np.zeros(k + n)
    h[k:] = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (rt60_s * RATE))
    h[k] += 3.0
    return h / np.sqrt(h @ h)


def active_rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    loud = x[np.abs(x) > 0.05 * np.max(np.abs(x))] if x.any() else x
    return float(np.sqrt(np.mean(loud ** 2))) if len(loud) else 0.0


class Session:
    """One room: the robot's echo path, the noise, and the canceller that has heard everything so far."""

    def __init__(self, h: np.ndarray, echo_rms: float, rng: np.random.Generator, path: Path | None = None):
        self.h, self.echo_rms, self.rng = h, echo_rms, rng
        self.canceller = EchoCanceller()
        if path is not None:
            self.canceller.load(path)   # the echo path kept from an earlier session
        self.cpu_s, self.audio_s = 0.0, 0.0

    def microphone(self, played: np.ndarray, person: np.ndarray | None = None, offset_s: float = 0.0,
                   level: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(microphone int16, the echo in it, the person in it): the played int16 clip through the room, the
        person's clip at `level` x the echo's loudness from `offset_s`, and the noise."""
        echo = np.convolve(played.astype(np.float64), self.h)[:len(played)]
        rms = active_rms(echo)
        echo = echo * (self.echo_rms / rms) if rms else echo
        near = np.zeros(len(played))
        if person is not None:
            start = int(offset_s * RATE)
            p = person.astype(np.float64) * level * self.echo_rms / active_rms(person)
            near[start:start + len(p)] = p[:len(near) - start]
        noise = self.rng.standard_normal(len(played)) * self.echo_rms * 10 ** (-45 / 20)
        mic = np.clip(echo + near + noise, -32768, 32767).astype(np.int16)
        return mic, echo, near

    def cancel(self, mic: np.ndarray, played: np.ndarray) -> np.ndarray:
        """The canceller's output lined up with `mic` (the canceller's latency is carried into the next clip)."""
        start = time.process_time()
        out = np.concatenate([self.canceller.process(mic[i:i + 480], played[i:i + 480])
                              for i in range(0, len(mic), 480)])
        self.cpu_s += time.process_time() - start
        self.audio_s += len(mic) / RATE
        return out


def padded(x: np.ndarray, before_s: float = 0.5, after_s: float = 0.5) -> np.ndarray:
    return np.concatenate([np.zeros(int(before_s * RATE), np.int16), x, np.zeros(int(after_s * RATE), np.int16)])


def erle_db(echo: np.ndarray, out: np.ndarray, mic: np.ndarray, latency: int) -> float:
    """Echo energy over residual-echo energy, on the output lined up with the input (latency taken off)."""
    out = out[latency:].astype(np.float64)
    residual = out - (mic[:len(out)].astype(np.float64) - echo[:len(out)])   # output less noise (what is left)
    return float(10 * np.log10(np.sum(echo[:len(out)] ** 2) / max(np.sum(residual ** 2), 1e-9)))


def louder_blocks(mic: np.ndarray, out: np.ndarray, latency: int, block: int) -> tuple[int, float]:
    """(blocks of the output, lined up with the microphone, with more energy than the microphone's beyond the int16
    rounding of the output (at most sqrt(block x mic energy) + block / 4): echo added; the largest such excess in dB,
    0 if none)."""
    out = out[latency:].astype(np.float64)
    m = mic[:len(out)].astype(np.float64)
    n = len(out) // block * block
    e_out, e_mic = (out[:n].reshape(-1, block) ** 2).sum(1), (m[:n].reshape(-1, block) ** 2).sum(1)
    louder = e_out > e_mic + np.sqrt(block * e_mic) + block / 4
    worst = float(np.max(10 * np.log10(e_out[louder] / np.maximum(e_mic[louder], 1)))) if louder.any() else 0.0
    return int(louder.sum()), round(worst, 2)


def kept_path(args) -> dict:
    """The first sentence of a session with the echo path kept from an earlier one (see the module's docstring)."""
    folder = Path(tempfile.mkdtemp())
    rng, nrng = random.Random(args.seed), np.random.default_rng(args.seed)
    arms = ("no_aec", "aec_fresh", "aec_kept", "aec_other_room")
    streams = {arm: SpeechStream(PocketsphinxRecognizer()) for arm in arms}
    person = {v: speech("stop", v, folder) for v in PERSON_VOICES}
    rooms = [room_response(room["delay_ms"], room["rt60_s"], nrng) for room in ROOMS]
    result = {"trials_per_level": 0, "stop_first_sentence": {f"{arm}_{lv}": 0 for arm in arms for lv in LEVELS},
              "first_sentences_alone": 0, "false_stops": {arm: 0 for arm in arms}, "false_stop_which": [],
              "erle_db_first_sentence": {arm: [] for arm in arms[1:]},
              "output_louder_than_mic_blocks": {arm: 0 for arm in arms[1:]},
              "output_louder_than_mic_worst_db": {arm: 0.0 for arm in arms[1:]}, "blocks": 0,
              "resets": {arm: 0 for arm in arms[1:]}, "earlier_session": []}
    # 1. the earlier session in each room: --train sentences of the robot alone, the learnt path saved to a file
    paths = []
    for r, h in enumerate(rooms):
        voice = ROBOT_VOICES[r % len(ROBOT_VOICES)]
        session = Session(h, 3000.0, nrng)
        texts = questions(args.train, rng)[:args.train // 2] + announcements(args.train - args.train // 2, rng)
        for text in texts:
            played = padded(speech(text, voice, folder))
            session.cancel(session.microphone(played)[0], played)
        c = session.canceller
        paths.append(c.save(folder / f"echo_path_room{r}.npz"))
        result["earlier_session"].append({"room": r, "sentences": len(texts), "converged": c.converged,
                                          "erle_estimate_db": round(c.erle_db, 1), "resets": c.resets})
    # 2. new sessions on the robot's first sentence
    for r, h in enumerate(rooms):
        voice = ROBOT_VOICES[r % len(ROBOT_VOICES)]
        kept = {"aec_fresh": None, "aec_kept": paths[r], "aec_other_room": paths[(r + 1) % len(rooms)]}
        for v in PERSON_VOICES:
            played = padded(speech(announcements(1, rng)[0], voice, folder))   # a pick's announcement
            trials = [("alone", None, 1.0)] + [(name, person[v], level) for name, level in LEVELS.items()]
            for name, said, level in trials:
                mic, echo, _ = Session(h, 3000.0, nrng).microphone(played, said, 1.0, level)   # 0.5 s in
                audio = {"no_aec": mic}
                for arm, path in kept.items():
                    session = Session(h, 3000.0, nrng, path)
                    audio[arm] = out = session.cancel(mic, played)
                    result["resets"][arm] += session.canceller.resets
                    if said is None:
                        lat = session.canceller.latency
                        result["erle_db_first_sentence"][arm].append(round(erle_db(echo, out, mic, lat), 1))
                        louder, worst = louder_blocks(mic, out, lat, 256)
                        result["output_louder_than_mic_blocks"][arm] += louder
                        result["output_louder_than_mic_worst_db"][arm] = max(
                            result["output_louder_than_mic_worst_db"][arm], worst)
                if said is None:
                    result["blocks"] += (len(mic) - 256) // 256
                    result["first_sentences_alone"] += 1
                else:
                    result["trials_per_level"] += name == "same_level"
                for arm in arms:
                    heard = "stop" in heard_while_speaking(streams[arm], audio[arm], muted=False)
                    if said is None and heard:
                        result["false_stops"][arm] += 1
                        result["false_stop_which"].append([arm, r, v])
                    elif said is not None:
                        result["stop_first_sentence"][f"{arm}_{name}"] += heard
    for arm, values in result["erle_db_first_sentence"].items():
        result[f"erle_db_first_sentence_median_{arm}"] = float(np.median(values))
        result[f"erle_db_first_sentence_min_{arm}"] = float(np.min(values))
    return {"seed": args.seed, "mode": "kept_path", "rooms": ROOMS, "other_room": "room r uses the path of room r+1",
            "train_sentences": args.train, "person_voices": PERSON_VOICES, "echo_levels": LEVELS,
            "stop_offset_s": 0.5, "noise_db_under_echo": 45, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=14, help="robot sentences per room (false stops, ERLE)")
    parser.add_argument("--kept-path", action="store_true", help="only the first sentence, echo path kept or not")
    parser.add_argument("--train", type=int, default=6, help="--kept-path: sentences of the earlier session")
    parser.add_argument("--json", default="", help="also write the result here")
    args = parser.parse_args()
    if args.kept_path:
        out = kept_path(args)
        print(json.dumps(out))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        return
    folder = Path(tempfile.mkdtemp())
    rng, nrng = random.Random(args.seed), np.random.default_rng(args.seed)
    streams = {arm: SpeechStream(PocketsphinxRecognizer()) for arm in ("no_aec", "aec")}
    texts = list(REPLIES) + questions(args.sentences, rng) + announcements(args.sentences, rng)
    rng.shuffle(texts)
    person = {(v, t): speech(t, v, folder) for v in PERSON_VOICES for t in (*STOPS, *COMMANDS)}
    result = {"false_stops": {"no_aec": 0, "aec": 0}, "false_stop_which": [], "robot_sentences": 0,
              "erle_db": [], "stop_over_robot": {f"{arm}_{lv}": 0 for arm in streams for lv in LEVELS},
              "stop_over_robot_n_per_level": 0, "stop_first_sentence": {"no_aec": 0, "aec": 0},
              "stop_first_sentence_n": 0, "stop_alone": {"no_aec": 0, "aec": 0}, "stop_alone_n": 0,
              "double_talk": {"n": 0, "recognised_alone": 0, "recognised_no_aec": 0, "recognised_aec": 0,
                              "person_to_echo_db_before": [], "person_to_residual_db_after": [], "heard": []}}

    def both(mic, out, speaking=True):
        heard = {}
        for arm, audio in (("no_aec", mic), ("aec", out)):
            if speaking:
                heard[arm] = heard_while_speaking(streams[arm], audio, muted=False)
            else:
                heard[arm] = [u.text for i in range(0, len(audio), 480) for u in streams[arm].feed(audio[i:i + 480])]
                heard[arm] += [u.text for u in streams[arm].flush()]
        return heard

    per_room = args.sentences
    cpu, audio_s = 0.0, 0.0
    for r, room in enumerate(ROOMS):
        h = room_response(room["delay_ms"], room["rt60_s"], nrng)
        voice = ROBOT_VOICES[r % len(ROBOT_VOICES)]
        first = speech(announcements(1, rng)[0], voice, folder)   # a pick's announcement: a long first sentence
        # 1. a stop 0.5 s into the first sentence of a fresh session, per person voice
        for v in PERSON_VOICES:
            session = Session(h, 3000.0, nrng)
            played = padded(first)
            mic, _, _ = session.microphone(played, person[(v, "stop")], 1.0, 1.0)
            out = session.cancel(mic, played)
            heard = both(mic, out)
            result["stop_first_sentence_n"] += 1
            for arm in heard:
                result["stop_first_sentence"][arm] += "stop" in heard[arm]
            cpu, audio_s = cpu + session.cpu_s, audio_s + session.audio_s
        # 2. the robot's sentences, alone, through the room: false stops and ERLE (one session from here on)
        session = Session(h, 3000.0, nrng)
        for i, text in enumerate(texts[r * per_room:(r + 1) * per_room]):
            played = padded(speech(text, voice, folder))
            mic, echo, _ = session.microphone(played)
            out = session.cancel(mic, played)
            erle = erle_db(echo, out, mic, session.canceller.latency)
            result["erle_db"].append({"room": r, "sentence": i, "erle_db": round(erle, 1)})
            heard = both(mic, out)
            result["robot_sentences"] += 1
            for arm in heard:
                if "stop" in heard[arm]:
                    result["false_stops"][arm] += 1
                    result["false_stop_which"].append([arm, voice, text])
        # 3. stops over the robot, the canceller converged
        for j, text in enumerate(REPLIES[2 * r:2 * r + 2]):
            robot = padded(speech(text + " " + texts[-1 - j], voice, folder))
            for k, v in enumerate(PERSON_VOICES):
                for name, level in LEVELS.items():
                    said = STOPS[(j + k) % len(STOPS)]
                    mic, _, _ = session.microphone(robot, person[(v, said)], 0.9, level)
                    out = session.cancel(mic, robot)
                    heard = both(mic, out)
                    for arm in heard:
                        result["stop_over_robot"][f"{arm}_{name}"] += "stop" in heard[arm]
            result["stop_over_robot_n_per_level"] += len(PERSON_VOICES)
        # 4. double talk: a person's command over the robot (speaking state off: is the command recognised?)
        if r == 1:
            for v in PERSON_VOICES:
                for c, command in enumerate(COMMANDS):
                    robot = padded(speech(texts[-5 - c], voice, folder))
                    mic, echo, near = session.microphone(robot, person[(v, command)], 0.7, 1.0)
                    out = session.cancel(mic, robot)
                    alone = padded(person[(v, command)])
                    heard = both(mic, out, speaking=False)
                    heard["alone"] = [u.text for i in range(0, len(alone), 480)
                                      for u in streams["no_aec"].feed(alone[i:i + 480])]
                    heard["alone"] += [u.text for u in streams["no_aec"].flush()]
                    dt = result["double_talk"]
                    dt["n"] += 1
                    for key, arm in (("recognised_alone", "alone"), ("recognised_no_aec", "no_aec"),
                                     ("recognised_aec", "aec")):
                        dt[key] += command in heard[arm]
                    dt["heard"].append({"said": command, **heard})
                    span = near != 0
                    lat = session.canceller.latency
                    resid = out[lat:].astype(np.float64) - near[:len(out) - lat] - (mic[:len(out) - lat] - echo[
                        :len(out) - lat] - near[:len(out) - lat])
                    p2 = np.sum(near[span] ** 2)
                    dt["person_to_echo_db_before"].append(round(float(10 * np.log10(p2 / np.sum(echo[span] ** 2))), 1))
                    dt["person_to_residual_db_after"].append(
                        round(float(10 * np.log10(p2 / np.sum(resid[span[:len(resid)]] ** 2))), 1))
        cpu, audio_s = cpu + session.cpu_s, audio_s + session.audio_s
        result.setdefault("canceller_resets_per_room", []).append(session.canceller.resets)
    # 5. stops alone (nothing played: the canceller's reference is zeros)
    for v in PERSON_VOICES:
        for said in STOPS:
            clip = padded(person[(v, said)])
            mic = np.clip(clip.astype(np.float64) * 3000.0 / active_rms(person[(v, said)]), -32768, 32767)
            mic = mic.astype(np.int16)
            out = session.cancel(mic, np.zeros_like(mic))
            heard = both(mic, out)
            result["stop_alone_n"] += 1
            for arm in heard:
                result["stop_alone"][arm] += "stop" in heard[arm]
    converged = [e["erle_db"] for e in result["erle_db"] if e["sentence"] >= 3]
    result["erle_db_converged_median"] = float(np.median(converged))
    result["erle_db_converged_min"] = float(np.min(converged))
    result["erle_db_first_sentence_median"] = float(np.median([e["erle_db"] for e in result["erle_db"]
                                                               if e["sentence"] == 0]))
    result["canceller_cpu_s_per_audio_s"] = round(cpu / audio_s, 4)
    out = {"seed": args.seed, "rooms": ROOMS, "person_voices": PERSON_VOICES, "echo_levels": LEVELS,
           "noise_db_under_echo": 45, "result": result}
    text = json.dumps(out)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
