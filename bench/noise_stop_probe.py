"""Probe (session 26): which path of the recogniser says "stop" on noise bursts, and which on real stops.

Noise bursts (white, pink, brown, a hum; 0.5 and 1.5 s; three levels) after silence, and espeak-ng stops at three
gains, all streamed through one SpeechStream. For every final result it prints (text, the path that made it: domain
= the main search itself, keyword = the strict spotter's override of a short result, keyword_quiet = the quiet
keyphrase's; posterior; strict spotter heard; quiet spotter heard). Session 26's diagnosis (docs/speech.md).

Session 27: every arm (`--min-voiced`: the quiet keyphrase's voicing check, the run of voiced frames needed, 0 =
off) hears the same bursts and clips, each arm its own recogniser and stream, in one process; per arm the noise bursts
heard as a stop and the stops heard (a clip counts when a final result is a stop).

    cd bench && PYTHONPATH=..:. ../.venv/bin/python noise_stop_probe.py [--seed 5] [--min-voiced 0,4] [--snr 10]
        [--voices en-us+m3,en-gb+f3,en-us+f2,en-us,en-gb]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from robot_voice_false_stops import PERSON_VOICES, speech
from stops_at_the_edges import feed

from koba_ros.speech.audio import RATE, add_noise
from koba_ros.speech.recognizers import QUIET_STOP_VOICED_RUN, PocketsphinxRecognizer
from koba_ros.speech.streaming import SpeechStream
from koba_ros.teleop.commands import is_stop


def noise(kind: str, seconds: float, rms: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * RATE)
    if kind == "hum":   # mains harmonics and a little hiss
        t = np.arange(n) / RATE
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / k for k, f in enumerate((50, 100, 150, 200), 1))
        x = x + 0.1 * rng.standard_normal(n)
    else:               # white, pink (1/f) or brown (1/f^2) power
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= f[1:] ** ({"white": 0.0, "pink": 1.0, "brown": 2.0}[kind] / 2)
        spectrum[0] = 0
        x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x ** 2)) * rms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--min-voiced", default=f"0,{QUIET_STOP_VOICED_RUN}",
                        help="comma list of quiet_stop_min_voiced arms")
    parser.add_argument("--voices", default=",".join((*PERSON_VOICES, "en-us", "en-gb")))
    parser.add_argument("--snr", type=float, default=None,
                        help="also every stop clip with white noise this many dB under it (default: clean only)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pad = np.zeros(RATE // 2, dtype=np.int16)
    clips = []   # (what: noise | stop, description, audio)
    for kind in ("white", "pink", "brown", "hum"):
        for rms in (300.0, 1000.0, 3000.0):
            for seconds in (0.5, 1.5):
                burst = np.clip(noise(kind, seconds, rms, rng), -32768, 32767).astype(np.int16)
                clips.append(("noise", [kind, rms, seconds], np.concatenate([pad, burst, pad])))
    folder = Path(tempfile.mkdtemp())
    for voice in args.voices.split(","):
        for said in ("stop", "stop moving", "please stop"):
            clip = speech(said, voice, folder).astype(np.float64)
            for gain in (0.1, 0.3, 1.0):
                audio = np.concatenate([pad, np.clip(clip * gain, -32768, 32767).astype(np.int16), pad])
                clips.append(("stop", [voice, said, gain], audio))
                if args.snr is not None:
                    clips.append(("stop", [voice, said, gain, args.snr], add_noise(audio, args.snr, rng)))
    out = {"seed": args.seed, "noise_bursts": sum(c[0] == "noise" for c in clips),
           "stop_clips": sum(c[0] == "stop" for c in clips), "arms": {}}
    for min_voiced in (int(v) for v in args.min_voiced.split(",")):
        recognizer = PocketsphinxRecognizer(quiet_stop_min_voiced=min_voiced)
        finals = []
        finish = recognizer.finish

        def logged_finish(finish=finish, recognizer=recognizer, finals=finals):
            spotter = recognizer.stop_spotter
            h = finish()
            finals.append([h.text, h.model, round(h.confidence, 3), bool(spotter.spans), bool(spotter.quiet_spans)])
            return h

        recognizer.finish = logged_finish
        stream = SpeechStream(recognizer)
        arm = {"noise_stops": [], "stops": [], "stops_missed": []}
        for what, description, audio in clips:
            finals.clear()
            feed(stream, audio, {})
            stops = [f for f in finals if is_stop(f[0])]
            if what == "noise":
                arm["noise_stops"] += [[*description, *f] for f in stops]
            else:
                arm["stops"] += [[*description, *f] for f in finals]
                if not stops:
                    arm["stops_missed"].append(description)
        arm["noise_bursts_heard_as_stop"] = len({tuple(s[:3]) for s in arm["noise_stops"]})
        arm["stop_clips_heard"] = out["stop_clips"] - len(arm["stops_missed"])
        arm["unvoiced_quiet_stops_dropped"] = recognizer.unvoiced_quiet_stops
        out["arms"][f"min_voiced_{min_voiced}"] = arm
    print(json.dumps(out))


if __name__ == "__main__":
    main()
