"""YaRN (Peng, Quesnelle, Fan & Shippole 2023, arXiv 2309.00071) against position interpolation (Chen et al. 2023)
and plain RoPE, extending a tiny model's context 4 times with a short fine-tune, on the CPU.

    .venv/bin/python bench/lm_yarn.py [--seeds 3] [--steps 1000] [--finetune 50]

The paper's headline: YaRN extends a RoPE model's context with a short fine-tune (Table 1: Llama 2 7B, s = 2, 400
steps; their 64k and 128k models in far fewer tokens than earlier methods) and reaches a lower perplexity at the
extended length than position interpolation (PI) fine-tuned the same way; without fine-tuning it also degrades less.

Here: config/lm/llama_tiny.yaml's model (d 64, 2 layers, 4 heads of 16, RoPE base 10000, RMSNorm, SwiGLU, GQA)
trained from scratch on the standard library's docstrings (bytes) at context L = 64 for --steps steps, then evaluated
at context 256 = 4 L on held-out text with three RoPEs built from the same weights: none (RoPE as trained, positions
extrapolated), linear (PI, s = 4) and yarn (s = 4, L = 64, β = 32, α = 1, transformers' ramp, temperature
0.1 ln 4 + 1). Each is then fine-tuned for --finetune steps at context 256 (the same tokens per step as pretraining,
AdamW at 1e-3 after 5 warm-up steps, one data order per seed shared by the arms) and evaluated again. Loss: mean
cross-entropy in nats per byte, over all 256 positions, and split into the first 64 (the trained context: what a
scaling costs short text) and the other 192 (the extension).

Decision rule, written before any run: YaRN's headline is reproduced here if, after the fine-tune, yarn's loss over
all 256 positions is lower than linear's on every seed, and the mean over seeds of the paired gap (linear - yarn) is
more than twice its standard error (stdev of the gaps / sqrt(seeds)). Otherwise it is reported as not reproduced,
with the numbers. Also reported, but not part of the rule: the same comparison before the
fine-tune (zero-shot), the first-64 loss (YaRN should cost short text less than PI), and `none` as a control (if
plain RoPE fine-tuned for the same steps matches yarn, scaling buys nothing at this size).

Prints one JSON object: per seed and arm the losses before and after the fine-tune, the pretrained model's loss at
its own context 64, the means over seeds, and the verdict.
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import builtin_corpus
from koba_ros.nlp.model import TransformerLM

REPO = Path(__file__).resolve().parents[1]
TRAINED, LONG, FACTOR = 64, 256, 4.0
ARMS = {"none": {}, "linear": {"rope_scaling": "linear", "rope_factor": FACTOR},
        "yarn": {"rope_scaling": "yarn", "rope_factor": FACTOR, "rope_original_max_len": TRAINED}}


def batches(data: torch.Tensor, length: int, batch: int, steps: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - length - 1, (batch,), generator=generator)
        rows = torch.stack([data[s:s + length + 1] for s in starts.tolist()])
        yield rows[:, :-1], rows[:, 1:]


def train(model, data, length: int, batch: int, steps: int, lr: float, warmup: int, seed: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    model.train()
    for step, (x, y) in enumerate(batches(data, length, batch, steps, seed)):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


@torch.no_grad()
def evaluate(model, windows: torch.Tensor) -> dict:
    """Mean loss per position over held-out windows [N, length + 1], then over all, the first 64, the rest."""
    per_position = torch.zeros(windows.shape[1] - 1)
    for rows in windows.split(16):
        logits = model(rows[:, :-1])[0]
        loss = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none")  # [B, T]
        per_position += loss.sum(0)
    per_position /= len(windows)
    out = {"all": per_position.mean().item()}
    if len(per_position) > TRAINED:
        out.update(first_64=per_position[:TRAINED].mean().item(), rest=per_position[TRAINED:].mean().item())
    return {k: round(v, 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--finetune", type=int, default=50)
    parser.add_argument("--eval-windows", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    data = torch.tensor(list(builtin_corpus().encode("utf-8")), dtype=torch.long)
    split = int(0.95 * len(data))
    train_data, val = data[:split], data[split:]
    stride = (len(val) - LONG - 1) // args.eval_windows
    windows = torch.stack([val[i * stride:i * stride + LONG + 1] for i in range(args.eval_windows)])
    model_config = yaml.safe_load((REPO / "config/lm/llama_tiny.yaml").read_text())["model"]
    model_config = {**model_config, "max_len": LONG}
    runs = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        base = TransformerLM(TransformerConfig(**model_config))
        train(base, train_data, TRAINED, 16, args.steps, 3e-3, 20, seed)
        run = {"pretrained_at_64": evaluate(base, windows[:, :TRAINED + 1])}
        for arm, scaling in ARMS.items():
            model = TransformerLM(TransformerConfig(**{**model_config, **scaling}))
            model.load_state_dict(base.state_dict())
            model.eval()
            before = evaluate(model, windows)
            train(model, train_data, LONG, 4, args.finetune, 1e-3, 5, 1000 + seed)
            run[arm] = {"zero_shot": before, "finetuned": evaluate(model, windows)}
        runs[seed] = run
        # progress on stderr, so stdout is the one JSON object
        print(json.dumps({"seed": seed, **run, "elapsed_s": round(time.time() - started)}), file=sys.stderr, flush=True)
    mean = {arm: {when: {part: round(statistics.mean(runs[s][arm][when][part] for s in runs), 4)
                         for part in ("all", "first_64", "rest")} for when in ("zero_shot", "finetuned")}
            for arm in ARMS}
    gaps = [runs[s]["linear"]["finetuned"]["all"] - runs[s]["yarn"]["finetuned"]["all"] for s in runs]
    spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    reproduced = all(g > 0 for g in gaps) and statistics.mean(gaps) > 2 * spread / math.sqrt(len(gaps))
    print(json.dumps({"runs": runs, "mean": mean, "linear_minus_yarn_finetuned": [round(g, 4) for g in gaps],
                      "reproduced": reproduced, "elapsed_s": round(time.time() - started),
                      "settings": {"steps": args.steps, "finetune": args.finetune, "seeds": args.seeds,
                                   "trained_context": TRAINED, "long_context": LONG, "factor": FACTOR}}))


if __name__ == "__main__":
    main()
