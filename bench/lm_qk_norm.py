"""QK-norm (Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion Parameters", §2) across learning rates:
without it attention logits grow with the learning rate until training degrades; with each head's queries and keys
normalised they stay bounded. Dehghani et al. saw the growth at 8B parameters; Wortsman et al. 2023 ("Small-scale
proxies for large-scale Transformer training instabilities", arXiv 2309.14322) showed it in small models trained at
high learning rates, and measure it as learning-rate sensitivity: the mean over learning rates of
min(L(lr), L_init) - min_lr L(lr), L_init the loss at initialisation (ln V).

    .venv/bin/python bench/lm_qk_norm.py [--seeds 3] [--steps 200] [--lrs 3e-3,1e-2,3e-2,1e-1]

Both arms are config/lm/llama_tiny.yaml (d 64, 2 layers, 4 heads, RoPE, RMSNorm, SwiGLU, the standard library's
docstrings) with `qk_norm` false and true, the same seeds, data and steps. Prints one JSON object: per arm, learning
rate and seed the final validation loss and the largest |q.k| / sqrt(d_head) over a held-out probe batch (causal
pairs only); per seed each arm's learning-rate sensitivity.
"""
import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from koba_ros.errors import KobaError
from koba_ros.nlp.data import builtin_corpus
from koba_ros.nlp.positions import apply_rope
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def max_attention_logit(model, ids: torch.Tensor) -> float:
    """The largest |q_i . k_j| / sqrt(d_head), j <= i, over every head and layer: what the softmax sees."""
    largest = []

    def probe(attn, args):
        x, rope = args[0], args[3]
        B, T, _ = x.shape
        q, k, _v = attn.qkv(x).view(B, T, -1, attn.head_dim).transpose(1, 2).split(
            [attn.n_heads, attn.n_kv_heads, attn.n_kv_heads], dim=1)
        if attn.q_norm is not None:
            q, k = attn.q_norm(q), attn.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        k = k.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=1)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(attn.head_dim)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        largest.append(logits.abs().masked_fill(~causal, 0).max().item())

    hooks = [block.attn.register_forward_pre_hook(probe) for block in model.blocks]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return max(largest)


def sensitivity(losses: list[float], initial: float) -> float:
    """Wortsman et al. 2023's learning-rate sensitivity: E_lr[min(L(lr), L_init) - min_lr L(lr)] (a diverged run
    counts as L_init)."""
    best = min(losses)
    return statistics.mean(min(loss, initial) - best for loss in losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lrs", default="3e-3,1e-2,3e-2,1e-1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lrs = [float(v) for v in args.lrs.split(",")]
    base = yaml.safe_load((REPO / "config/lm/llama_tiny.yaml").read_text())
    arms = {"plain": {**base["model"], "qk_norm": False}, "qk_norm": {**base["model"], "qk_norm": True}}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    text = builtin_corpus()[-40000:]  # the validation end of the corpus (val_fraction takes the tail)
    results = {arm: {str(lr): {"val_loss": [], "max_logit": []} for lr in lrs} for arm in arms}
    initial = None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for lr in lrs:
                for arm, model in arms.items():  # the arms alternate: neither gets the warmer machine throughout
                    out = f"{tmp}/{arm}_{lr}_{seed}"
                    config = {**base, "model": model, "steps": args.steps, "seed": seed, "lr": lr, "progress": False,
                              "out": out, "eval_every": args.steps, "ckpt_every": args.steps}
                    cell = results[arm][str(lr)]
                    try:
                        loss = train(TrainConfig.from_dict(config))["val_loss"]
                    except KobaError as exc:  # a NaN loss stops the run: it counts as diverged
                        print(f"# {arm} lr {lr} seed {seed}: {exc}", flush=True)
                        loss = float("nan")
                    trained = load_trained(out) if math.isfinite(loss) else None
                    if trained is not None:
                        ids = torch.tensor(trained.tokenizer.encode(text)[:8 * 64]).view(8, 64)
                        cell["max_logit"].append(round(max_attention_logit(trained.model, ids), 2))
                        initial = math.log(trained.model.config.vocab_size)
                    else:
                        cell["max_logit"].append(None)
                    cell["val_loss"].append(round(loss, 4) if math.isfinite(loss) else None)
    initial = initial or math.log(259)
    report = {"steps": args.steps, "seeds": seeds, "lrs": lrs, "initial_loss": round(initial, 4), "arms": results,
              "sensitivity": {}}
    for arm in arms:
        per_seed = []
        for i in range(len(seeds)):
            losses = [results[arm][str(lr)]["val_loss"][i] for lr in lrs]
            per_seed.append(round(sensitivity([initial if v is None else v for v in losses], initial), 4))
        report["sensitivity"][arm] = per_seed
        for lr in lrs:
            cell = results[arm][str(lr)]
            finite = [v for v in cell["val_loss"] if v is not None]
            cell["mean_val_loss"] = round(statistics.mean(finite), 4) if finite else None
            logits = [v for v in cell["max_logit"] if v is not None]
            cell["mean_max_logit"] = round(statistics.mean(logits), 2) if logits else None
    report["qk_norm_lower_sensitivity_seeds"] = sum(
        a < b for a, b in zip(report["sensitivity"]["qk_norm"], report["sensitivity"]["plain"], strict=True))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
