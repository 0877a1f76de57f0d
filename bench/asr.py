"""ASR benchmark: word error rate, real-time factor and end-of-speech latency, domain LM vs the general model.

Audio is generated here (never committed): domain commands and instructions spoken by several
espeak-ng voices, clean and with white noise at 20 dB SNR, each padded with half a second of
silence and streamed in 30 ms chunks through the same SpeechStream the speech_node uses.
Sentences come from the generators the domain LM is built from: `--teleop issue` takes the issue's
example commands (each checked to be a teleop_phrases() sentence), `--teleop sampled` samples
teleop_phrases() with the seed; picking instructions are sampled from picking_phrases().
Tuning runs use other voices and seeds than the reported run (docs/speech.md).

Systems, all in the same process: the domain LM as configured now, the domain LM as it was before
the tuning (discount 0.5, lw 6.5, tree + flat search, "low_confidence" general fallback), and
pocketsphinx's general en-us model. An out-of-domain condition (plain English, clean) shows what the
general-model fallback buys.
Also decodes Debian's goforward.raw (a real human recording) when pocketsphinx-testdata is installed.

    taskset -c 0 .venv/bin/python bench/asr.py [--sentences 14] [--voices en-us,en-us+m3,en-gb]
        [--teleop issue|sampled] [--seed 0] [--systems domain_lm,domain_lm_before,general_lm_baseline]
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

from koba_ros.speech.audio import RATE, add_noise, load_audio
from koba_ros.speech.domain_lm import picking_phrases
from koba_ros.speech.recognizers import PocketsphinxRecognizer
from koba_ros.speech.streaming import transcribe
from koba_ros.speech.tts import Speaker
from koba_ros.teleop.commands import is_stop, teleop_phrases

GOFORWARD = Path("/usr/share/pocketsphinx/test/data/goforward.raw")
TELEOP = ["move left five centimeters", "up ten centimeters", "forward three centimeters", "open the gripper",
          "close the gripper", "go home", "stop", "move right twenty centimeters", "down two centimeters",
          "go forward ten meters"]
OUT_OF_DOMAIN = ["what time is it", "the weather is nice today", "thank you very much", "can you hear me"]
VOLUMES = {"quiet": 0.1, "normal": 1.0, "loud": 4.0}   # gain on espeak's output (-20 dB, 0, +12 dB with clipping)
SYSTEMS = {   # name → PocketsphinxRecognizer options
    "domain_lm": {},
    # before session 20: no quiet stops, and a second pass moved the live cepstral mean
    "domain_lm_session19": {"keep_live_cmn": False, "quiet_stop_threshold": None},
    "domain_lm_grammar": {"teleop_grammar": True},
    "domain_lm_no_stop_guard": {"stop_threshold": None, "keep_stops": False,   # how stops were handled before
                                "keep_live_cmn": False},
    "domain_lm_before": {"discount_mass": 0.5, "lm_weight": 6.5, "fallback": "low_confidence", "flat_search": False,
                         "stop_threshold": None, "keep_stops": False, "keep_live_cmn": False},
    "general_lm_baseline": {"use_domain_lm": False, "stop_threshold": None, "keep_stops": False},
}


def word_errors(ref: str, hyp: str) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[len(h)]


def run_system(recognizer, clips) -> dict:
    """clips: (voice, reference, audio). WER overall and per voice; latency over utterances with words."""
    errors, words = {}, {}
    cpu = audio = 0.0
    latencies, exact, mistakes, finish_cpu = [], 0, [], []
    stops_said = stops_heard = others = false_stops = 0
    passes_before = recognizer.second_passes
    finish = recognizer.finish

    def timed_finish():   # CPU spent after the end of speech (final search, second pass): load-independent
        t0 = time.process_time()
        hyp = finish()
        finish_cpu.append(time.process_time() - t0)
        return hyp

    recognizer.finish = timed_finish
    for voice, ref, x in clips:
        t0 = time.process_time()
        utterances = transcribe(recognizer, x)
        cpu += time.process_time() - t0
        audio += len(x) / RATE
        hyp = " ".join(u.text for u in utterances if u.text)
        for key in ("all", voice):
            errors[key] = errors.get(key, 0) + word_errors(ref, hyp)
            words[key] = words.get(key, 0) + len(ref.split())
        exact += hyp == ref
        heard_stop = any(is_stop(u.text) for u in utterances)
        if is_stop(ref):
            stops_said, stops_heard = stops_said + 1, stops_heard + heard_stop
        else:
            others, false_stops = others + 1, false_stops + heard_stop
        latencies += [u.latency for u in utterances if u.text]
        if hyp != ref and len(mistakes) < 8:
            mistakes.append({"voice": voice, "ref": ref, "hyp": hyp})
    recognizer.finish = finish
    latencies = latencies or [float("nan")]
    return {"wer": round(errors["all"] / words["all"], 4),
            "wer_per_voice": {v: round(errors[v] / words[v], 4) for v in errors if v != "all"},
            "sentence_accuracy": round(exact / len(clips), 4), "rtf_one_core": round(cpu / audio, 4),
            "latency_median_s": round(statistics.median(latencies), 3),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 3),
            "end_of_speech_cpu_ms_median": round(1000 * statistics.median(finish_cpu), 1),
            "end_of_speech_cpu_ms_p95": round(1000 * float(np.percentile(finish_cpu, 95)), 1),
            "general_second_passes": recognizer.second_passes - passes_before,
            "stop_detection_rate": round(stops_heard / stops_said, 4) if stops_said else None,
            "false_stop_rate": round(false_stops / others, 4) if others else None, "examples_wrong": mistakes}


def stop_summary(conditions: dict) -> dict:
    """Stop detection over every volume/noise condition; false stops over the in-domain non-stop clips."""
    stop = [r["stop_detection_rate"] for c, r in conditions.items() if c.startswith("stop_")]
    false = [r["false_stop_rate"] for c, r in conditions.items() if not c.startswith(("stop_", "out_of"))]
    return {"stop_detection_rate": round(float(np.mean(stop)), 4), "false_stop_rate": round(float(np.mean(false)), 4)}


def sweep_stop_thresholds(thresholds, clips) -> dict:
    """The keyword spotter alone over whole clips: stop detection and false stops per threshold (tuning)."""
    from koba_ros.speech.stop_spotter import StopSpotter

    out = {}
    for threshold in thresholds:
        spotter, said, heard, others, false = StopSpotter(threshold), 0, 0, 0, 0
        for _, ref, x in clips:
            spotter.start()
            spotter.feed(x)
            hit = spotter.finish()
            if is_stop(ref):
                said, heard = said + 1, heard + hit
            else:
                others, false = others + 1, false + hit
        out[f"{threshold:g}"] = {"stop_detection_rate": round(heard / max(said, 1), 4),
                                 "false_stop_rate": round(false / max(others, 1), 4)}
    return out


def benchmark_sentences(teleop: str, n: int, rng: random.Random) -> list[str]:
    """Teleop commands + picking instructions, all drawn from the generators the domain LM is trained on."""
    phrases = teleop_phrases()
    if teleop == "issue":
        missing = [s for s in TELEOP if s not in phrases]
        assert not missing, f"issue examples not produced by teleop_phrases(): {missing}"
        commands = TELEOP[:n]
    else:
        commands = rng.sample(phrases, min(n, len(TELEOP)))
    return commands + rng.sample(picking_phrases(), max(0, n - len(commands)))


def build_parser() -> argparse.ArgumentParser:
    """The defaults are the reported run's (docs/speech.md "Numbers"); tuning runs pass other voices and seeds."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=14, help="teleop commands + sampled picking instructions")
    ap.add_argument("--voices", default="en-us,en-us+m3,en-gb", help="espeak-ng voices, comma-separated "
                    "(tuning also used en-us+f2, kept out of the reported run)")
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teleop", choices=("issue", "sampled"), default="issue")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--stop-thresholds", default="", help="comma list: sweep the stop spotter alone (tuning)")
    return ap


def main() -> None:
    args = build_parser().parse_args()

    sentences = benchmark_sentences(args.teleop, args.sentences, random.Random(args.seed))
    noise_rng = np.random.default_rng(args.seed)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    noisy = f"noise_{args.snr:g}dB"
    clips = {"clean": [], noisy: [], "out_of_domain_clean": [],
             **{f"stop_{v}_{c}": [] for v in VOLUMES for c in ("clean", noisy)}}
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices.split(","):
            speaker = Speaker(voice, 150, play=False)
            for i, s in enumerate(sentences + OUT_OF_DOMAIN):
                path = Path(tmp) / f"{i}.wav"
                speaker.synthesize(s, path)
                x = np.concatenate([pad, load_audio(path), pad])
                if s in OUT_OF_DOMAIN:
                    clips["out_of_domain_clean"].append((voice, s, x))
                    continue
                clips["clean"].append((voice, s, x))
                clips[noisy].append((voice, s, add_noise(x, args.snr, noise_rng)))
            speaker.synthesize("stop", Path(tmp) / "stop.wav")   # one spoken stop at three volumes, clean and noisy
            for volume, gain in VOLUMES.items():
                x = np.clip(np.concatenate([pad, load_audio(Path(tmp) / "stop.wav"), pad]) * gain, -32768, 32767)
                x = x.astype(np.int16)
                clips[f"stop_{volume}_clean"].append((voice, "stop", x))
                clips[f"stop_{volume}_{noisy}"].append((voice, "stop", add_noise(x, args.snr, noise_rng)))

    result = {"voices": args.voices.split(","), "sentences": sentences, "clips_per_condition": len(clips["clean"]),
              "systems": {}}
    if args.stop_thresholds:
        stop_clips = [c for cond, cs in clips.items() if cond.startswith("stop_") for c in cs]
        domain = clips["clean"] + clips[noisy]
        result["stop_threshold_sweep"] = sweep_stop_thresholds(
            [float(t) for t in args.stop_thresholds.split(",")], stop_clips + domain)
    for name in filter(None, args.systems.split(",")):
        recognizer = PocketsphinxRecognizer(**SYSTEMS[name])
        result["systems"][name] = {cond: run_system(recognizer, c) for cond, c in clips.items()}
        result["systems"][name]["stop_summary"] = stop_summary(result["systems"][name])
        result["systems"][name]["keyword_stops"] = recognizer.keyword_stops
        result["systems"][name]["grammar_wins"] = recognizer.grammar_wins
        if GOFORWARD.is_file():
            got = " ".join(u.text for u in transcribe(recognizer, load_audio(GOFORWARD)))
            result["systems"][name]["goforward_raw"] = {"text": got, "exact": got == "go forward ten meters"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
