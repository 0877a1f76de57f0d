"""Training throughput of our GPT-2-small-shaped LM vs Hugging Face GPT2LMHeadModel (eager and compiled).

.venv/bin/python bench/lm_bench.py [--size tiny] [--steps N]   -> one JSON object (same as `koba lm bench --json`).
"""
import argparse
import json

from koba_ros.nlp.bench import run_bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="gpt2", choices=("gpt2", "tiny"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(json.dumps(run_bench(size=args.size, device=args.device, steps=args.steps)))
