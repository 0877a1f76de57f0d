"""GPT-2-style blocks against today's Llama-style ones (RMSNorm, SwiGLU, grouped-query attention, no biases), in one
process, at the same size, data, steps and learning rate.

    .venv/bin/python bench/lm_block_styles.py [--seeds 3] [--steps 200]

Both arms are config/lm/llama_tiny.yaml (d 64, 2 layers, 4 heads, RoPE, Pre-LN, WSO schedule, the standard
library's docstrings); the GPT-2-style arm sets LayerNorm, a 4 d GELU FFN, 4 key/value heads and biases. The SwiGLU
FFN's 176 hidden units hold about the parameters of the 256-unit GELU one (Shazeer 2020 keeps 2/3 of the width for
that reason). Prints one JSON object: parameters, the final validation loss per seed and their mean, the
llama/gpt2 ratio of training tokens per second, and the KV cache's bytes per token (n_kv_heads / n_heads of it).
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load((REPO / "config/lm/llama_tiny.yaml").read_text())
    arms = {"gpt2_style": {**base["model"], **GPT2_STYLE}, "llama_style": base["model"]}
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
    gpt2, llama = report["arms"]["gpt2_style"], report["arms"]["llama_style"]
    report["llama_over_gpt2"] = {
        "val_loss_difference": round(llama["mean_val_loss"] - gpt2["mean_val_loss"], 4),
        "seeds_llama_lower": sum(a < b for a, b in zip(llama["val_loss"], gpt2["val_loss"], strict=True)),
        "tokens_per_s_ratio": round(llama["tokens_per_s"] / gpt2["tokens_per_s"], 3),
        "kv_cache_ratio": llama["kv_cache_bytes_per_token_fp32"] / gpt2["kv_cache_bytes_per_token_fp32"]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
