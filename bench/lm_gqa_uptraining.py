"""GQA's headline (Ainslie et al. 2023, §2.1 and Table 1): a multi-head checkpoint converted to grouped-query
attention by mean-pooling its key/value heads, then trained on for a small fraction (alpha = 5 %) of its
pre-training steps, comes close to the multi-head model's quality, and closer than multi-query (one key/value head).

    .venv/bin/python bench/lm_gqa_uptraining.py [--seeds 3] [--steps 400] [--alpha 0.05]

Per seed, in one process: config/lm/llama_tiny.yaml with 4 key/value heads (multi-head) is pre-trained for --steps
on the standard library's docstrings; it is then converted to 2 key/value heads (GQA) and 1 (MQA) with
`gqa_conversion.pool_kv_heads`. Each converted model, and the multi-head model as the control, trains on for
alpha x steps from those weights (`init_from`, the same batches and learning rate). Every model is scored on the
same held-out 5 % of the corpus (nats per byte, `evaluation.score`). Prints one JSON object.
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from koba_ros.nlp.checkpoint import save_checkpoint
from koba_ros.nlp.evaluation import score
from koba_ros.nlp.gqa_conversion import pool_kv_heads
from koba_ros.nlp.prepared import token_stream
from koba_ros.nlp.tokenizer import ByteTokenizer
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
KV_HEADS = {"mha": 4, "gqa": 2, "mqa": 1}


def held_out_loss(model, tokens: torch.Tensor, seq_len: int) -> float:
    with torch.no_grad():
        nats, count = score(model, tokens, seq_len, seq_len)
    return round(nats / count, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05, help="uptraining steps as a fraction of --steps")
    parser.add_argument("--eval-tokens", type=int, default=60_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load((REPO / "config/lm/llama_tiny.yaml").read_text())
    base["model"]["n_kv_heads"] = KV_HEADS["mha"]
    held_out = token_stream(base["train_data"], ByteTokenizer(), "byte", base["seq_len"]).split(0.05)[1]
    tokens = torch.as_tensor(held_out.tokens[:args.eval_tokens], dtype=torch.long)
    uptrain_steps = max(1, round(args.alpha * args.steps))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            run = f"{tmp}/mha_{seed}"
            train(TrainConfig.from_dict({**base, "steps": args.steps, "seed": seed, "progress": False, "out": run,
                                         "eval_every": args.steps, "ckpt_every": args.steps}))
            pretrained = load_trained(run)
            row = {"seed": seed, "pretrained_mha": held_out_loss(pretrained.model, tokens, base["seq_len"])}
            for name, kv in KV_HEADS.items():
                model = pool_kv_heads(pretrained.model, kv)
                source = f"{tmp}/{name}_{seed}_converted"
                save_checkpoint(source, model.state_dict(), None,
                                {"step": 0, "config": {**pretrained.config, "model": model.config.to_dict()}})
                row[f"{name}_converted"] = held_out_loss(model, tokens, base["seq_len"])
                out = f"{tmp}/{name}_{seed}_uptrained"
                train(TrainConfig.from_dict({**base, "model": None, "init_from": source, "steps": uptrain_steps,
                                             "warmup": 0, "seed": seed + 100, "progress": False, "out": out,
                                             "eval_every": uptrain_steps, "ckpt_every": uptrain_steps}))
                row[f"{name}_uptrained"] = held_out_loss(load_trained(out).model, tokens, base["seq_len"])
            rows.append(row)
            # progress on stderr, so stdout is the one JSON object
            print(json.dumps(row), file=sys.stderr, flush=True)
    keys = [k for k in rows[0] if k != "seed"]
    mean = {k: round(statistics.mean(r[k] for r in rows), 4) for k in keys}
    report = {"steps": args.steps, "uptrain_steps": uptrain_steps, "eval_tokens": int(tokens.numel()), "rows": rows,
              "mean": mean,
              "gap_to_mha_after_uptraining": {k: round(mean[f"{k}_uptrained"] - mean["mha_uptrained"], 4)
                                              for k in ("gqa", "mqa")},
              "gap_to_mha_right_after_conversion": {k: round(mean[f"{k}_converted"] - mean["mha_converted"], 4)
                                                    for k in ("gqa", "mqa")},
              "seeds_gqa_closer_than_mqa": sum(r["gqa_uptrained"] < r["mqa_uptrained"] for r in rows)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
