"""Sampling speed with and without the KV cache (koba_ros/nlp/kv_cache.py), in one process.

    .venv/bin/python bench/lm_sample.py [--device cuda] [--tokens 480]

A randomly initialised LM (d 256, 6 layers, 8 heads, context 512, byte vocabulary; weights do not change the cost)
continues a 16-token prompt greedily, first without the cache (the whole context through the model for every token),
then with it; both must give the same tokens. Prints one JSON object: tokens per second of each and their ratio.
"""
import argparse
import json
import time

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate


def timed(model, prompt, tokens, use_cache, device) -> tuple[list[int], float]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    new = generate(model, prompt, tokens, temperature=0, use_cache=use_cache)
    if device == "cuda":
        torch.cuda.synchronize()
    return new, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tokens", type=int, default=480, help="new tokens (the context stays within 512)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TransformerConfig(d_model=256, n_layers=6, n_heads=8, max_len=512)
    model = TransformerLM(config).to(args.device).eval()
    prompt = list(range(100, 116))
    generate(model, prompt, 8, temperature=0)  # warm-up
    uncached, t_uncached = timed(model, prompt, args.tokens, False, args.device)
    cached, t_cached = timed(model, prompt, args.tokens, True, args.device)
    print(json.dumps({"bench": "lm_sample", "device": args.device, "threads": args.threads, "new_tokens": args.tokens,
                      "model": {"d_model": 256, "n_layers": 6, "n_heads": 8, "max_len": 512},
                      "same_tokens": cached == uncached,
                      "uncached_tokens_per_s": round(len(uncached) / t_uncached, 1),
                      "kv_cache_tokens_per_s": round(len(cached) / t_cached, 1),
                      "speedup": round(t_uncached / t_cached, 2)}))


if __name__ == "__main__":
    main()
