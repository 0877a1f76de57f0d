"""koba say TEXT [--out FILE.wav]: speak with the same core as tts_node."""
HELP = "Speak text with espeak-ng (the tts_node's core)."


def add_arguments(p):
    p.add_argument("text", help="What to say.")
    p.add_argument("--out", default="", help="Write a WAV file instead of (or as well as) playing.")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us).")
    p.add_argument("--rate", type=int, default=160, help="Words per minute, 80..450 (default 160).")
    p.add_argument("--json", action="store_true", help="Print a JSON object.")


def run(args):
    from koba_ros.cli import print_json
    from koba_ros.speech.tts import Speaker

    spoken = Speaker(args.voice, args.rate, args.out).speak(args.text)
    if args.json:
        print_json({"text": spoken.text, "wav": spoken.wav_path, "duration": round(spoken.duration, 3),
                    "played": spoken.played})
    elif not spoken.played:
        print(f"no sound device; wrote {spoken.wav_path} ({spoken.duration:.1f} s)")
