"""Peak memory and start-up time of a training stream: a text file tokenised at start against a token file from
`koba lm prepare` (koba_ros/nlp/prepared.py), read through a memory map.

    .venv/bin/python bench/lm_data_memory.py [--tokenizer byte|gpt2] [--megabytes 12]

The corpus is the standard library's source (data.stdlib_source, about 12 MB), written to a temporary file and
prepared once (that time is reported too). Each way then runs in a fresh process (one thread): build the stream as
the trainer does (prepared.token_stream) and draw 200 batches of 16 x 1024 tokens. Reported per way: the process's
resident-memory high-water mark above its size after imports, the seconds to the first batch, and a digest of the
batches, which must be equal. Prints one JSON object with the ratios, token file over text.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resident_memory import peak_above_now_mb


def measure(source: str, tokenizer_name: str) -> dict:
    import torch

    from koba_ros.nlp.data import batch_generator
    from koba_ros.nlp.prepared import token_stream
    from koba_ros.nlp.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_tokenizer(tokenizer_name)
    def build_and_draw():
        start = time.perf_counter()
        stream = token_stream(source, tokenizer, tokenizer_name, 1024)
        x, y = stream.batch(16, batch_generator(0, 0, 0))
        first_batch_s = time.perf_counter() - start
        digest = hashlib.sha256(x.numpy().tobytes())
        for step in range(1, 200):
            x, y = stream.batch(16, batch_generator(0, step, 0))
            digest.update(x.numpy().tobytes())
        return len(stream), first_batch_s, digest.hexdigest()[:16]

    (tokens, first_batch_s, digest), peak_mb = peak_above_now_mb(build_and_draw)
    return {"tokens": tokens, "peak_above_start_mb": peak_mb, "first_batch_s": round(first_batch_s, 3),
            "batches_digest": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", choices=("byte", "gpt2"), default="byte")
    parser.add_argument("--megabytes", type=float, default=12.0)
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "TOKENIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    from koba_ros.nlp.data import stdlib_source
    from koba_ros.nlp.prepared import prepare
    from koba_ros.nlp.tokenizer import build_tokenizer

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        text_path, bin_path = Path(folder) / "corpus.txt", Path(folder) / "corpus.bin"
        text_path.write_text(stdlib_source(int(args.megabytes * 1e6)), encoding="utf-8")
        start = time.perf_counter()
        meta = prepare(str(text_path), build_tokenizer(args.tokenizer), {"tokenizer": args.tokenizer}, bin_path)
        prepare_s = time.perf_counter() - start
        runs = {}
        for way, source in (("text_file", text_path), ("token_file", bin_path)):
            out = subprocess.run([sys.executable, __file__, "--child", str(source), args.tokenizer], env=env,
                                 capture_output=True, text=True, check=True).stdout
            runs[way] = json.loads(out.strip().splitlines()[-1])
    text, mapped = runs["text_file"], runs["token_file"]
    print(json.dumps({"bench": "lm_data_memory", "tokenizer": args.tokenizer, "text_bytes": meta["text_bytes"],
                      "tokens": meta["tokens"], "token_file_bytes": meta["tokens"] * (2 if meta["dtype"] == "uint16"
                                                                                       else 4),
                      "prepare_s": round(prepare_s, 2), **runs,
                      "same_batches": text["batches_digest"] == mapped["batches_digest"],
                      "peak_memory_ratio": round(mapped["peak_above_start_mb"] / max(text["peak_above_start_mb"],
                                                                                     1e-9), 4),
                      "first_batch_time_ratio": round(mapped["first_batch_s"] / text["first_batch_s"], 4)}))


if __name__ == "__main__":
    main()
