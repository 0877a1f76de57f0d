"""ASR benchmark: word error rate, real-time factor and end-of-speech latency, domain LM vs the general model.

Audio is generated here (never committed): domain commands and instructions spoken by several
espeak-ng voices, clean and with white noise at 20 dB SNR, each padded with half a second of
silence and streamed in 30 ms chunks through the same SpeechStream the speech_node uses.
Baseline in the same run: pocketsphinx's general en-us language model (no domain LM).
Also decodes Debian's goforward.raw (a real human recording) when pocketsphinx-testdata is installed.

    taskset -c 0 .venv/bin/python bench/asr.py [--sentences 16] [--voices en-us,en-us+m3,en-gb,en-us+f2]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from koba_ros.speech.audio import RATE, load_audio
from koba_ros.speech.domain_lm import picking_phrases
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import transcribe
from koba_ros.speech.tts import Speaker

GOFORWARD = Path("/usr/share/pocketsphinx/test/data/goforward.raw")
TELEOP = ["move left five centimeters", "up ten centimeters", "forward three centimeters", "open the gripper",
          "close the gripper", "go home", "stop", "move right twenty centimeters", "down two centimeters",
          "go forward ten meters"]


def word_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[len(h)]


def add_noise(x: np.ndarray, snr_db: float, rng) -> np.ndarray:
    signal = x.astype(np.float64)
    power = np.mean(signal[np.abs(signal) > 100] ** 2)   # speech power, ignoring the silent padding
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def run_system(recognizer, clips) -> dict:
    errors = words = 0
    cpu = audio = 0.0
    latencies, exact, mistakes = [], 0, []
    for ref, x in clips:
        t0 = time.process_time()
        utterances = transcribe(recognizer, x)
        cpu += time.process_time() - t0
        audio += len(x) / RATE
        hyp = " ".join(u.text for u in utterances if u.text)
        errors += word_errors(ref, hyp)
        words += len(ref.split())
        exact += hyp == ref
        latencies += [u.latency for u in utterances]
        if hyp != ref and len(mistakes) < 8:
            mistakes.append({"ref": ref, "hyp": hyp})
    return {"wer": round(errors / words, 4), "sentence_accuracy": round(exact / len(clips), 4),
            "rtf_one_core": round(cpu / audio, 4), "latency_median_s": round(statistics.median(latencies), 3),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 3), "examples_wrong": mistakes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=16, help="teleop commands + sampled picking instructions")
    ap.add_argument("--voices", default="en-us,en-us+m3,en-gb,en-us+f2")
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    sentences = TELEOP[: args.sentences] + rng.sample(picking_phrases(), max(0, args.sentences - len(TELEOP)))
    noise_rng = np.random.default_rng(args.seed)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    clips = {"clean": [], f"noise_{args.snr:g}dB": []}
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices.split(","):
            speaker = Speaker(voice, 150, play=False)
            for i, s in enumerate(sentences):
                path = Path(tmp) / f"{i}.wav"
                speaker.synthesize(s, path)
                x = np.concatenate([pad, load_audio(path), pad])
                clips["clean"].append((s, x))
                clips[f"noise_{args.snr:g}dB"].append((s, add_noise(x, args.snr, noise_rng)))

    systems = {"domain_lm": PocketsphinxRecognizer(use_domain_lm=True),
               "general_lm_baseline": PocketsphinxRecognizer(use_domain_lm=False)}
    result = {"voices": args.voices.split(","), "sentences": len(sentences), "clips_per_condition": len(clips["clean"]),
              "systems": {}}
    for name, recognizer in systems.items():
        result["systems"][name] = {cond: run_system(recognizer, c) for cond, c in clips.items()}
        if GOFORWARD.is_file():
            got = " ".join(u.text for u in transcribe(recognizer, load_audio(GOFORWARD)))
            result["systems"][name]["goforward_raw"] = {"text": got, "exact": got == "go forward ten meters"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
