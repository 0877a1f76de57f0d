"""How soon does a spoken "stop" reach the robot, and how often does one come out that nobody said? Three versions
of the stop handling, in one process, on the same clips:
  - session16: the stop comes at the end of the utterance; the spotter overrides the main search whatever it heard;
  - early_stops: + early stops, published while the person still talks (the default since session 17);
  - top_veto: + the spotter may not override a main result where "top" comes before a box word ("top right"): the
    default since session 17;
  - top_time_veto: + nor where the spotter's "stop" lies on a word the main search heard as "top": the default
    since session 18;
  - word_limit_N (--word-limits): + the spotter overrides the main search only when that heard at most N words;
  - live_cmn: top_time_veto + a second pass (general model) leaves the main decoder's live cepstral mean as it
    found it (session 20; the arms above reproduce the sessions they name, without it);
  - quiet_T (--quiet-thresholds): live_cmn + a second "stop" keyphrase at threshold T, trusted only where the main
    search heard at most two words and no command (session 20);
  - quiet: live_cmn + that keyphrase at the default threshold; quiet_voiced: + its detection must hold voiced
    frames (session 27, voicing.py).

    cd bench && PYTHONPATH=..:. ../.venv/bin/python stop_latency.py [--voices en-us,en-us+m3,en-gb]
        [--instructions reported|tuning|validation|fresh] [--word-limits 2,3] [--quiet-thresholds 1e-25,1e-30]
        [--arms session16,early_stops,top_veto,top_time_veto,live_cmn]
    (limit arms keep both vetoes off, to measure the limit alone)

Clips are made as in bench/asr.py (espeak-ng voices, half a second of silence either side, clean and with white
noise at 20 dB SNR): every stop phrase of the teleop language ("stop", "stop stop", "stop moving", "please stop") at
three volumes, the issue's other teleop commands and sampled picking instructions, plain English, and unconstrained
picking instructions with "top" in them, worded as people do rather than as the domain LM's sentences (the spotter
hears "stop" in "top"; the tuning list chose the two-word rule, the reported list was written before its run).
Each clip is streamed in 30 ms chunks through SpeechStream, as in the speech_node.

For each clip and arm: when the first stop utterance came out, as a live microphone would see it: the audio time
at the end of the chunk that produced it plus the CPU time that chunk's processing took. Reported: stop detection
(a stop came out at all), false stops (one came out for a clip that says no stop), for the one-word "stop" clips the
time from the end of speech (the VAD's) to the first stop, and for every stop clip heard by both arms the time the
early stop saved; per arm the CPU time all chunks took (`cpu_s`). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from asr import OUT_OF_DOMAIN, VOLUMES, benchmark_sentences

from koba_ros.speech.audio import RATE, add_noise, load_audio
from koba_ros.speech.recognizers import QUIET_STOP_VOICED_RUN, PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.speech.tts import Speaker
from koba_ros.teleop.commands import is_stop, teleop_phrases

CHUNK = 480  # 30 ms
PAD_S = 0.5  # s of silence (noise, in noisy clips) either side of the words
OLD = dict(keep_live_cmn=False, quiet_stop_threshold=None)  # neither session-20 change
NO_VETO = dict(top_veto=False, top_time_veto=False, **OLD)
ARMS = {"session16": dict(early_stops=False, **NO_VETO), "early_stops": NO_VETO,
        "top_veto": dict(top_veto=True, top_time_veto=False, **OLD),  # the default in session 17
        "top_time_veto": dict(top_veto=True, top_time_veto=True, **OLD),  # the default in sessions 18 and 19
        "live_cmn": dict(top_veto=True, top_time_veto=True, keep_live_cmn=True, quiet_stop_threshold=None),
        # the default quiet keyphrase (1e-50 since session 21) without / with session 27's voicing check
        "quiet": dict(top_veto=True, top_time_veto=True, keep_live_cmn=True, quiet_stop_min_voiced=0),
        "quiet_voiced": dict(top_veto=True, top_time_veto=True, keep_live_cmn=True,
                             quiet_stop_min_voiced=QUIET_STOP_VOICED_RUN)}
# + one arm per --word-limits and --quiet-thresholds entry
TUNING = ["put the toy in the top right box", "place the thing in the top left bin", "move that cup to the top corner",
          "could you put the fluffy one in the top right", "drop it into the box on the top left",
          "the top right one please", "grab the small toy and put it at the top", "put the bear on top of the box",
          "take the block from the top left box", "I want the duck in the top right container",
          "put it in the top box", "the one at the top", "move the red thing to the top right corner box",
          "top left box please", "can you move the toy to the top right", "put the brown teddy in the top one",
          "in the top right box put the cube", "the toy on top"]
REPORTED = ["please put the stuffed animal in the top right box", "move the mug to the top left one",
            "can you place the green thing at the top", "put the rubber duck into the top right bin",
            "the toy should go to the top left", "top right please", "put that in the box at the top right",
            "move the plush toy over to the top left box", "could you grab the cup and put it on the top shelf",
            "the top left box for the red cube", "set the teddy down in the top box",
            "put the little car in the top right corner", "drop the ball in the top left",
            "the yellow thing goes in the top right box", "top box please", "put the fluffy thing at the top left",
            "place the can in the top right one", "I need the blue block in the top right"]
VALIDATION = ["would you put the doll in the top right box", "the cup goes top left", "put the sponge at the very top",
              "put the green block over there in the top one", "top left for the teddy please",
              "I'd like the marker in the top right bin", "move the small bear up to the top box",
              "can the duck go in the top left box", "put the orange thing on the top right",
              "the top one for the ball", "please drop the toy car in the top left corner",
              "stick the yellow cube in the top right box", "the blue one goes in the top box",
              "take the plush rabbit to the top left", "place it at the top right please",
              "put the red block in the box at the top", "top right box for the cup", "leave the tape in the top box"]
FRESH = ["get the bunny into the top left box", "put the spoon in the top right", "the duck belongs in the top box",
         "move the green cup to the top right one", "hey put that bear on the top left", "top right for the block",
         "I think the toy should go in the top one", "could the ball go on top of the box",
         "drop the red thing into the top right bin", "put the small cube at the top left corner",
         "set the toy on the top shelf", "the brush goes in the top left", "put the plush in the top box please",
         "into the top right box with the cup", "top one please", "move it to the top left box now",
         "put the can up in the top right", "the blue toy to the top left one"]


def _overlaps(u, audio_end: float, span: tuple[float, float]) -> bool:
    """The utterance's audio (the `audio_duration` s up to `audio_end`, the stream time it came out at) overlaps
    `span` (s)."""
    return audio_end - u.audio_duration < span[1] and audio_end > span[0]


def stream_clip(recognizer, x: np.ndarray) -> dict:
    """First stop's time (s, audio + processing), the end of speech of the utterance it belongs to, and the CPU time
    all of the clip's chunks took."""
    stream = SpeechStream(recognizer)
    first_stop, early, speech_ends, cpu = None, False, [], 0.0
    words = (PAD_S, len(x) / RATE - PAD_S)   # where the clip's words are (half a second of padding either side)
    on_words = False   # a stop came from an utterance over the words, not from the padding's noise alone
    for i in range(0, len(x), CHUNK):
        t0, c0 = time.perf_counter(), time.process_time()
        out = stream.feed(x[i:i + CHUNK])
        spent = time.perf_counter() - t0
        cpu += time.process_time() - c0
        for u in out:
            if not u.early:
                speech_ends.append(u.speech_end)
            if first_stop is None and is_stop(u.text):
                first_stop, early = min(i + CHUNK, len(x)) / RATE + spent, u.early
            on_words |= is_stop(u.text) and _overlaps(u, min(i + CHUNK, len(x)) / RATE, words)
    c0 = time.process_time()
    for u in stream.flush():
        speech_ends.append(u.speech_end)
        if first_stop is None and is_stop(u.text):
            first_stop = len(x) / RATE
        on_words |= is_stop(u.text) and _overlaps(u, len(x) / RATE, words)
    cpu += time.process_time() - c0
    return {"first_stop": first_stop, "early": early, "speech_end": speech_ends[0] if speech_ends else None,
            "stop_on_words": on_words,
            "cpu_s": cpu}


def percentile(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", default="en-us,en-us+m3,en-gb")
    ap.add_argument("--instructions", choices=("reported", "tuning", "validation", "fresh"), default="reported")
    ap.add_argument("--word-limits", default="2,3", help="comma list of keyword_max_words arms")
    ap.add_argument("--quiet-thresholds", default="", help="comma list of quiet_stop_threshold arms")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma list of the base arms to run, of {', '.join(ARMS)}")
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    stops = [p for p in teleop_phrases() if is_stop(p)]
    others = [s for s in benchmark_sentences("issue", args.sentences, random.Random(args.seed)) if not is_stop(s)]
    unconstrained = {"reported": REPORTED, "tuning": TUNING, "validation": VALIDATION,
                     "fresh": FRESH}[args.instructions]
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        ap.error(f"unknown arms {unknown}; arms: {', '.join(ARMS)}")
    arms = {**{a: ARMS[a] for a in args.arms.split(",")},
            **{f"word_limit_{n}": dict(keyword_max_words=int(n), **NO_VETO) for n in args.word_limits.split(",") if n},
            **{f"quiet_{t}": dict(ARMS["live_cmn"], quiet_stop_threshold=float(t), quiet_stop_min_voiced=0)
               for t in args.quiet_thresholds.split(",") if t}}
    rng = np.random.default_rng(args.seed)
    pad = np.zeros(int(PAD_S * RATE), dtype=np.int16)
    clips = []   # (kind, voice, text, condition, audio)
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices.split(","):
            speaker = Speaker(voice, 150, play=False)
            for text in stops + others + OUT_OF_DOMAIN + unconstrained:
                speaker.synthesize(text, Path(tmp) / "s.wav")
                x = np.concatenate([pad, load_audio(Path(tmp) / "s.wav"), pad])
                kind = ("stop" if text in stops else "out_of_domain" if text in OUT_OF_DOMAIN else
                        "unconstrained" if text in unconstrained else "command")
                gains = VOLUMES if kind == "stop" else {"normal": 1.0}
                for volume, gain in gains.items():
                    y = np.clip(x * gain, -32768, 32767).astype(np.int16)
                    clips.append((kind, voice, text, f"{volume}_clean", y))
                    if kind in ("stop", "command"):
                        clips.append((kind, voice, text, f"{volume}_noisy", add_noise(y, args.snr, rng)))
    runs = {}
    for name, options in arms.items():  # one recogniser per arm over all clips, as on a live stream
        recognizer = PocketsphinxRecognizer(**options)
        runs[name] = [stream_clip(recognizer, clip[-1]) for clip in clips]
    report = {"voices": args.voices.split(","), "stop_phrases": stops, "commands": others,
              "unconstrained": unconstrained,
              "clips": {k: sum(c[0] == k for c in clips)
                        for k in ("stop", "command", "out_of_domain", "unconstrained")},
              "arms": {}}
    for name, results in runs.items():
        pairs = [(c, r) for c, r in zip(clips, results, strict=True) if c[0] == "stop"]
        said = [r for _, r in pairs]
        one_word = [r["first_stop"] - r["speech_end"] for c, r in zip(clips, results, strict=True)
                    if c[2] == "stop" and r["first_stop"] is not None and r["speech_end"] is not None]
        report["arms"][name] = {
            "cpu_s": round(sum(r["cpu_s"] for r in results), 2),
            "stops_heard": sum(r["first_stop"] is not None for r in said),
            # session 27: a stop heard in the padding's noise alone (noisy clips) is no stop heard
            "stops_heard_on_the_words": sum(r["stop_on_words"] for r in said),
            "stop_detection_rate": round(sum(r["first_stop"] is not None for r in said) / len(said), 4),
            "stops_published_early": sum(r["early"] for r in said),
            "false_stops_commands": sum(r["first_stop"] is not None for c, r in zip(clips, results, strict=True)
                                        if c[0] == "command"),
            "false_stops_out_of_domain": sum(r["first_stop"] is not None
                                             for c, r in zip(clips, results, strict=True) if c[0] == "out_of_domain"),
            "false_stops_unconstrained": sum(r["first_stop"] is not None
                                             for c, r in zip(clips, results, strict=True) if c[0] == "unconstrained"),
            "one_word_stop_after_speech_end_s": {"median": percentile(one_word, 50), "p90": percentile(one_word, 90),
                                                 "n": len(one_word)},
            "stops_heard_by_condition": {cond: f"{sum(r['first_stop'] is not None for c, r in pairs if c[3] == cond)}"
                                               f"/{sum(c[3] == cond for c, _ in pairs)}"
                                         for cond in sorted({c[3] for c, _ in pairs})},
            "stops_heard_by_phrase": {p: f"{sum(r['first_stop'] is not None for c, r in pairs if c[2] == p)}"
                                         f"/{sum(c[2] == p for c, _ in pairs)}" for p in stops},
            "early_by_condition": {cond: sum(r["early"] for c, r in pairs if c[3] == cond)
                                   for cond in sorted({c[3] for c, _ in pairs})}}
    if "session16" in runs and "early_stops" in runs:
        before, now = runs["session16"], runs["early_stops"]
        saved = [a["first_stop"] - b["first_stop"] for c, a, b in zip(clips, before, now, strict=True)
                 if c[0] == "stop" and a["first_stop"] is not None and b["first_stop"] is not None]
        by_phrase = {p: [a["first_stop"] - b["first_stop"] for c, a, b in zip(clips, before, now, strict=True)
                         if c[2] == p and a["first_stop"] is not None and b["first_stop"] is not None] for p in stops}
        report["early_stops_saved_s"] = {"median": percentile(saved, 50), "p10": percentile(saved, 10),
                                         "max": percentile(saved, 100), "min": percentile(saved, 0), "n": len(saved),
                                         "median_by_phrase": {p: percentile(v, 50) for p, v in by_phrase.items()}}

    def clip_list(arm, keep):
        return [{"voice": c[1], "text": c[2], "condition": c[3]}
                for c, r in zip(clips, runs[arm], strict=True) if keep(c, r)]

    if "early_stops" in runs:
        report["stops_missed"] = clip_list("early_stops", lambda c, r: c[0] == "stop" and r["first_stop"] is None)
        report["false_stops"] = clip_list("early_stops", lambda c, r: c[0] != "stop" and r["first_stop"] is not None)
    # each change against the step before it
    steps = {"top_veto": "early_stops", "top_time_veto": "top_veto", "live_cmn": "top_time_veto",
             **{a: "early_stops" for a in arms if a.startswith("word_limit_")},
             **{a: "live_cmn" for a in arms if a.startswith("quiet_")}, "quiet": "live_cmn", "quiet_voiced": "quiet"}
    for name in (a for a, b in steps.items() if a in runs and b in runs):
        base = runs[steps[name]]
        report[f"stops_lost_by_{name}"] = [
            {"voice": c[1], "text": c[2], "condition": c[3]}
            for c, a, b in zip(clips, base, runs[name], strict=True)
            if c[0] == "stop" and a["first_stop"] is not None and b["first_stop"] is None]
        report[f"stops_gained_by_{name}"] = sum(
            c[0] == "stop" and a["first_stop"] is None and b["first_stop"] is not None
            for c, a, b in zip(clips, base, runs[name], strict=True))
    for name in (a for a in runs if a in ("top_veto", "top_time_veto", "live_cmn", "quiet") or a.startswith("quiet_")):
        report[f"false_stops_{name}"] = clip_list(name, lambda c, r: c[0] != "stop" and r["first_stop"] is not None)
        report[f"stops_missed_{name}"] = clip_list(name, lambda c, r: c[0] == "stop" and r["first_stop"] is None)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
