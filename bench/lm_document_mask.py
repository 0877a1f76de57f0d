"""The cost of document_mask (koba_ros/nlp/document_mask.py): training steps with and without it, in one process.

    .venv/bin/python bench/lm_document_mask.py [--device cuda] [--steps 10]

A randomly initialised LM (d 256, 4 layers, 8 heads, RoPE, byte vocabulary) takes forward + backward steps on
windows of 512 tokens, batch 8, whose tokens hold an eos every 64 on average (eight documents a window). Without the
mask SDPA runs with is_causal; with it, with the explicit [B, T, T] mask. The two variants alternate, the same
batches each, and the median step time of each is reported. Prints one JSON object with their ratio.
"""
import argparse
import json
import statistics
import time

import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.document_mask import documents_of
from koba_ros.nlp.model import TransformerLM

EOS = 258


def step(model, x, y, documents, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        loss = model(x, y, **({"documents": documents} if documents is not None else {}))[1]
    loss.backward()
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=256, n_layers=4, n_heads=8, max_len=512, positions="rope"))
    model = model.to(args.device).train()
    ids = torch.randint(0, 256, (8, 513), generator=g)
    ids[torch.rand(ids.shape, generator=g) < 1 / 64] = EOS
    x, y = ids[:, :-1].to(args.device), ids[:, 1:].to(args.device)
    documents = documents_of(x, EOS)
    times = {"causal": [], "document_mask": []}
    for i in range(args.steps + 2):  # two warm-up rounds
        for name, docs in (("causal", None), ("document_mask", documents)):
            t = step(model, x, y, docs, args.device)
            if i >= 2:
                times[name].append(t)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"bench": "lm_document_mask", "device": args.device, "threads": args.threads,
                      "steps": args.steps, "batch": 8, "seq": 512, "documents_per_window": round(
                          float(documents[:, -1].float().mean()) + 1, 1),
                      "causal_step_s": round(median["causal"], 4),
                      "document_mask_step_s": round(median["document_mask"], 4),
                      "time_ratio": round(median["document_mask"] / median["causal"], 3)}))


if __name__ == "__main__":
    main()
