"""GPT-2-style blocks against today's Llama-style ones (RMSNorm, SwiGLU, grouped-query attention, no biases), and
each of the three changes alone, in one process, at the same size, data, steps and learning rate.

    .venv/bin/python bench/lm_block_styles.py [--seeds 3] [--steps 200] [--arms gpt2_style,llama_style,...]

Both arms are config/lm/llama_tiny.yaml (d 64, 2 layers, 4 heads, RoPE, Pre-LN, WSO schedule, the standard
library's docstrings); the GPT-2-style arm sets LayerNorm, a 4 d GELU FFN, 4 key/value heads and biases. The SwiGLU
FFN's 176 hidden units hold about the parameters of the 256-unit GELU one (Shazeer 2020 keeps 2/3 of the width for
that reason). Each arm alone is the comparison its paper makes: RMSNorm for LayerNorm (Zhang & Sennrich 2019: about
the same quality, faster), SwiGLU for GELU at the same parameters (Shazeer 2020: lower perplexity), 2 key/value
heads for 4 trained from scratch (Ainslie et al. 2023 train by uptraining instead: bench/lm_gqa_uptraining.py).
GPT-NeoX's changes (session 22): attention and FFN side by side (PaLM, Chowdhery et al. 2022, §2 "Parallel
Layers": about 15 % faster at scale from fused input matrices, "small degradation in quality at 8B scale but no
degradation at 62B"; here the two input norms stay apart, as GPT-NeoX's, so nothing is fused) and RoPE on a quarter
of each head (Black et al. 2022, GPT-NeoX-20B §2.1.1: no quality lost, a little time saved). Rules written before
their run: parallel layers' "small degradation at small scale" holds if parallel_only's loss is above gpt2_style's
on at least 2 of 3 seeds and the mean gap is under 0.05; the quarter rotary's "no loss" holds if the mean gap is
within ±0.03. Session 23 ran the quarter rotary again at a 64-wide head (`--heads 1`), with the same rule.
Prints one JSON object: per arm the parameters, the final validation loss per seed and their mean, training tokens
per second, the KV cache's bytes per token; and each arm against the GPT-2 style. Tokens per second come from
whole runs on a shared machine: read their ratios only when the machine was otherwise idle.
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
GPT2_STYLE = dict(norm_type="layernorm", ffn="gelu", n_kv_heads=0, d_ff=0, bias=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all; gpt2_style is the base)")
    parser.add_argument("--heads", type=int, default=0, help="attention heads of every arm (default: llama_tiny's 4, "
                        "16 wide; 1 makes a 64-wide head, Pythia's width, where a quarter rotary turns 8 pairs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load((REPO / "config/lm/llama_tiny.yaml").read_text())
    if args.heads:
        base["model"].update(n_heads=args.heads, n_kv_heads=min(base["model"]["n_kv_heads"], args.heads))
    gpt2 = {**base["model"], **GPT2_STYLE}
    arms = {"gpt2_style": gpt2,  # then one change at a time, then all three (each paper's own comparison)
            "rmsnorm_only": {**gpt2, "norm_type": "rmsnorm"},
            "swiglu_only": {**gpt2, "ffn": "swiglu", "d_ff": base["model"]["d_ff"]},
            "gqa_only": {**gpt2, "n_kv_heads": base["model"]["n_kv_heads"]},
            "llama_style": base["model"],
            "llama_style_biases": {**base["model"], "bias": True},  # all three, biases kept: is it the biases?
            # GPT-NeoX's (Pythia's) two changes to GPT-2's blocks, one at a time (session 22)
            "parallel_only": {**gpt2, "parallel_residual": True},
            "partial_rope_only": {**gpt2, "rotary_dim": base["model"]["d_model"] // base["model"]["n_heads"] // 4}}
    if args.arms:
        unknown = set(args.arms.split(",")) - set(arms)
        if unknown or "gpt2_style" not in args.arms.split(","):
            parser.error(f"--arms: names from {', '.join(arms)}, gpt2_style included (unknown: {sorted(unknown)})")
        arms = {name: arms[name] for name in arms if name in args.arms.split(",")}
    losses = {name: [] for name in arms}
    speeds = {name: [] for name in arms}
    parameters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):  # the arms alternate, so neither gets the warmer machine throughout
            for name, model in arms.items():
                config = {**base, "model": model, "steps": args.steps, "seed": seed, "progress": False,
                          "out": f"{tmp}/{name}_{seed}", "eval_every": args.steps, "ckpt_every": args.steps}
                result = train(TrainConfig.from_dict(config))
                losses[name].append(result["val_loss"])
                speeds[name].append(result["tokens_per_s"])
                parameters[name] = result["parameters"]
    report = {"steps": args.steps, "seeds": args.seeds, "arms": {}}
    for name, model in arms.items():
        kv_heads, head_dim = model.get("n_kv_heads") or model["n_heads"], model["d_model"] // model["n_heads"]
        report["arms"][name] = {"parameters": parameters[name], "val_loss": losses[name],
                                "mean_val_loss": round(statistics.mean(losses[name]), 4),
                                "tokens_per_s": round(statistics.median(speeds[name])),
                                "kv_cache_bytes_per_token_fp32": 2 * model["n_layers"] * kv_heads * head_dim * 4}
    gpt2 = report["arms"]["gpt2_style"]
    for name in list(arms)[1:]:
        arm = report["arms"][name]
        report[f"{name}_over_gpt2_style"] = {
            "val_loss_difference": round(arm["mean_val_loss"] - gpt2["mean_val_loss"], 4),
            "seeds_lower": sum(a < b for a, b in zip(arm["val_loss"], gpt2["val_loss"], strict=True)),
            "parameters_ratio": round(arm["parameters"] / gpt2["parameters"], 3),
            "tokens_per_s_ratio": round(arm["tokens_per_s"] / gpt2["tokens_per_s"], 3),
            "kv_cache_ratio": arm["kv_cache_bytes_per_token_fp32"] / gpt2["kv_cache_bytes_per_token_fp32"]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
