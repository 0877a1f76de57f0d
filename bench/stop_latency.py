"""How soon does a spoken "stop" reach the robot? Early stops (published while the person still talks) against the
stop at the end of the utterance, in one process, on the same clips.

    cd bench && PYTHONPATH=..:. ../.venv/bin/python stop_latency.py [--voices en-us,en-us+m3,en-gb,en-us+f2]

Clips are made as in bench/asr.py (espeak-ng voices, half a second of silence either side, clean and with white
noise at 20 dB SNR): every stop phrase of the teleop language ("stop", "stop stop", "stop moving", "please stop") at
three volumes, the issue's other teleop commands and sampled picking instructions, and plain English. Each clip is
streamed in 30 ms chunks through SpeechStream, as in the speech_node.

For each clip and arm: when the first stop utterance came out, as a live microphone would see it: the audio time
at the end of the chunk that produced it plus the CPU time that chunk's processing took. Reported: stop detection
(a stop came out at all), false stops (one came out for a clip that says no stop), for the one-word "stop" clips the
time from the end of speech (the VAD's) to the first stop, and for every stop clip heard by both arms the time the
early stop saved. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from asr import OUT_OF_DOMAIN, VOLUMES, add_noise, benchmark_sentences

from koba_ros.speech.audio import RATE, load_audio
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.speech.tts import Speaker
from koba_ros.teleop.commands import is_stop, teleop_phrases

CHUNK = 480  # 30 ms


def stream_clip(recognizer, x: np.ndarray) -> dict:
    """First stop's time (s, audio + processing) and the end of speech of the utterance it belongs to."""
    stream = SpeechStream(recognizer)
    first_stop, early, speech_ends = None, False, []
    for i in range(0, len(x), CHUNK):
        t0 = time.perf_counter()
        out = stream.feed(x[i:i + CHUNK])
        spent = time.perf_counter() - t0
        for u in out:
            if not u.early:
                speech_ends.append(u.speech_end)
            if first_stop is None and is_stop(u.text):
                first_stop, early = min(i + CHUNK, len(x)) / RATE + spent, u.early
    for u in stream.flush():
        speech_ends.append(u.speech_end)
        if first_stop is None and is_stop(u.text):
            first_stop = len(x) / RATE
    return {"first_stop": first_stop, "early": early, "speech_end": speech_ends[0] if speech_ends else None}


def percentile(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", default="en-us,en-us+m3,en-gb,en-us+f2")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    stops = [p for p in teleop_phrases() if is_stop(p)]
    others = [s for s in benchmark_sentences("issue", args.sentences, random.Random(args.seed)) if not is_stop(s)]
    rng = np.random.default_rng(args.seed)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    clips = []   # (kind, voice, text, condition, audio)
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices.split(","):
            speaker = Speaker(voice, 150, play=False)
            for text in stops + others + OUT_OF_DOMAIN:
                speaker.synthesize(text, Path(tmp) / "s.wav")
                x = np.concatenate([pad, load_audio(Path(tmp) / "s.wav"), pad])
                kind = "stop" if text in stops else "out_of_domain" if text in OUT_OF_DOMAIN else "command"
                gains = VOLUMES if kind == "stop" else {"normal": 1.0}
                for volume, gain in gains.items():
                    y = np.clip(x * gain, -32768, 32767).astype(np.int16)
                    clips.append((kind, voice, text, f"{volume}_clean", y))
                    if kind != "out_of_domain":
                        clips.append((kind, voice, text, f"{volume}_noisy", add_noise(y, args.snr, rng)))
    arms = {"end_of_utterance": PocketsphinxRecognizer(early_stops=False), "early": PocketsphinxRecognizer()}
    runs = {name: [stream_clip(recognizer, clip[-1]) for clip in clips] for name, recognizer in arms.items()}
    report = {"voices": args.voices.split(","), "stop_phrases": stops, "commands": others,
              "clips": {k: sum(c[0] == k for c in clips) for k in ("stop", "command", "out_of_domain")}, "arms": {}}
    for name, results in runs.items():
        pairs = [(c, r) for c, r in zip(clips, results, strict=True) if c[0] == "stop"]
        said = [r for _, r in pairs]
        one_word = [r["first_stop"] - r["speech_end"] for c, r in zip(clips, results, strict=True)
                    if c[2] == "stop" and r["first_stop"] is not None and r["speech_end"] is not None]
        report["arms"][name] = {
            "stop_detection_rate": round(sum(r["first_stop"] is not None for r in said) / len(said), 4),
            "stops_published_early": sum(r["early"] for r in said),
            "false_stops_commands": sum(r["first_stop"] is not None for c, r in zip(clips, results, strict=True)
                                        if c[0] == "command"),
            "false_stops_out_of_domain": sum(r["first_stop"] is not None
                                             for c, r in zip(clips, results, strict=True) if c[0] == "out_of_domain"),
            "one_word_stop_after_speech_end_s": {"median": percentile(one_word, 50), "p90": percentile(one_word, 90),
                                                 "n": len(one_word)},
            "stops_heard_by_condition": {cond: f"{sum(r['first_stop'] is not None for c, r in pairs if c[3] == cond)}"
                                               f"/{sum(c[3] == cond for c, _ in pairs)}"
                                         for cond in sorted({c[3] for c, _ in pairs})},
            "stops_heard_by_phrase": {p: f"{sum(r['first_stop'] is not None for c, r in pairs if c[2] == p)}"
                                         f"/{sum(c[2] == p for c, _ in pairs)}" for p in stops},
            "early_by_condition": {cond: sum(r["early"] for c, r in pairs if c[3] == cond)
                                   for cond in sorted({c[3] for c, _ in pairs})}}
    saved = [a["first_stop"] - b["first_stop"] for c, a, b in zip(clips, runs["end_of_utterance"], runs["early"],
                                                                 strict=True)
             if c[0] == "stop" and a["first_stop"] is not None and b["first_stop"] is not None]
    by_phrase = {p: [a["first_stop"] - b["first_stop"] for c, a, b in zip(clips, runs["end_of_utterance"],
                                                                         runs["early"], strict=True)
                     if c[2] == p and a["first_stop"] is not None and b["first_stop"] is not None] for p in stops}
    report["early_saves_s"] = {"median": percentile(saved, 50), "p10": percentile(saved, 10),
                               "max": percentile(saved, 100), "min": percentile(saved, 0), "n": len(saved),
                               "median_by_phrase": {p: percentile(v, 50) for p, v in by_phrase.items()}}
    report["stops_missed"] = [{"voice": c[1], "text": c[2], "condition": c[3]}
                              for c, r in zip(clips, runs["early"], strict=True)
                              if c[0] == "stop" and r["first_stop"] is None]
    report["false_stop_clips_early_only"] = [
        {"voice": c[1], "text": c[2], "condition": c[3]}
        for c, a, b in zip(clips, runs["end_of_utterance"], runs["early"], strict=True)
        if c[0] != "stop" and b["first_stop"] is not None and a["first_stop"] is None]
    report["false_stop_clips_both"] = [
        {"voice": c[1], "text": c[2], "condition": c[3]}
        for c, a, b in zip(clips, runs["end_of_utterance"], runs["early"], strict=True)
        if c[0] != "stop" and b["first_stop"] is not None and a["first_stop"] is not None]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
