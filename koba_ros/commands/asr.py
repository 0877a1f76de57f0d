"""koba asr FILE [--backend B] [--json]: recognise a recording with the speech_node's core."""
HELP = "Recognise speech in an audio file (WAV/FLAC/OGG or 16 kHz .raw) with the speech_node's recogniser."


def add_arguments(p):
    p.add_argument("file", help="Audio file; any rate and channel count (converted to 16 kHz mono).")
    p.add_argument("--backend", default="pocketsphinx", choices=("pocketsphinx", "whisper"),
                   help="Recogniser (default pocketsphinx with the domain language model).")
    p.add_argument("--checkpoint", default="", help="Whisper checkpoint file (.pt), for --backend whisper.")
    p.add_argument("--general", action="store_true", help="pocketsphinx: general en-us model only, no domain LM.")
    p.add_argument("--json", action="store_true", help="Print a JSON object.")


def run(args):
    import time

    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError
    from koba_ros.speech.audio import duration, load_audio
    from koba_ros.speech.recognizers import check_backend_options, make_recognizer
    from koba_ros.speech.streaming import transcribe

    # given but unused: refused, not silently ignored (speech_node's parameters by the same check)
    check_backend_options(args.backend, [name for name in ("checkpoint", "general") if getattr(args, name)], "--")
    samples = load_audio(args.file)
    if len(samples) < 480:  # under one 30 ms frame: nothing a recogniser (or webrtcvad) can read
        raise KobaError(f"{args.file}: no audio to recognise ({len(samples)} samples at 16 kHz, "
                        "need at least 30 ms)")
    options = {"checkpoint": args.checkpoint} if args.backend == "whisper" else {"use_domain_lm": not args.general}
    recognizer = make_recognizer(args.backend, **options)
    started = time.process_time()   # CPU time: the real-time factor on one core
    utterances = transcribe(recognizer, samples)
    cpu = time.process_time() - started
    spoken = [u for u in utterances if u.text]
    text = " ".join(u.text for u in spoken)
    confidence = min((u.confidence for u in spoken), default=0.0)
    rtf = cpu / duration(samples)
    if args.json:
        print_json({"text": text, "confidence": round(confidence, 3), "backend": recognizer.backend,
                    "rtf": round(rtf, 3), "utterances": [{"text": u.text, "confidence": round(u.confidence, 3),
                                                          "start_to_end_s": round(u.audio_duration, 2)}
                                                         for u in spoken]})
    else:
        print(text)
