"""Fine-tuning from a pre-trained checkpoint (`init_from`) against training from scratch, in one process.

    .venv/bin/python bench/lm_finetune.py [--seeds 3] [--steps 100] [--pretrain-steps 200]

The robot's spoken-command sentences (speech/domain_lm.domain_sentences: pick-and-place instructions, answers to
the clarifying question, teleop commands; about 11k) are shuffled and split 90/10 into a training and a validation
file. config/lm/tiny.yaml (d 64, 2 layers, B2T, RoPE, byte-level) is pre-trained once on the standard library's
docstrings; then, for each seed, the same fine-tuning run (same steps, LR and batches) starts from those weights
(`init_from`) and from a fresh initialisation, and (`--lora-rank`) as LoRA adapters on the frozen pre-trained
weights. All are scored with `koba lm eval` on the validation sentences. Prints one JSON object: bits per byte per
seed and variant, their means, the ratios to scratch, and each variant's trainable parameters.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from command_corpus import write_command_split

from koba_ros.nlp.evaluation import evaluate_checkpoint
from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps (and the scratch run's)")
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lora-rank", type=int, default=8, help="the LoRA variant's rank (0: leave it out)")
    parser.add_argument("--lora-lr", type=float, default=1e-2, help="LoRA's LR (adapters take a larger one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_train, n_val = write_command_split(tmp)
        pre = TrainConfig.from_file(REPO / "config/lm/tiny.yaml",
                                    [f"steps={args.pretrain_steps}", f"out={tmp / 'pre'}", "progress=false",
                                     "tensorboard=false"])
        pre_summary = train(pre)
        runs = {"init_from": [], "scratch": [], **({"lora": []} if args.lora_rank else {})}
        trainable = {}
        for seed in range(args.seeds):
            for name in runs:
                overrides = [f"train_data={tmp / 'train.txt'}", f"val_data={tmp / 'val.txt'}", f"steps={args.steps}",
                             f"lr={args.lr}", "warmup=10", "schedule=cosine", f"seed={seed}", "progress=false",
                             "tensorboard=false", f"out={tmp / f'{name}{seed}'}", "eval_every=1000"]
                if name in ("init_from", "lora"):
                    overrides.append(f"init_from={tmp / 'pre'}")
                if name == "lora":
                    overrides += [f"lora_rank={args.lora_rank}", f"lr={args.lora_lr}"]
                summary = train(TrainConfig.from_file(REPO / "config/lm/tiny.yaml", overrides))
                trainable[name] = summary["trainable_parameters"]
                runs[name].append(evaluate_checkpoint(tmp / f"{name}{seed}", str(tmp / "val.txt"))["bits_per_byte"])
    means = {k: statistics.mean(v) for k, v in runs.items()}
    print(json.dumps({"bench": "lm_finetune", "model": "config/lm/tiny.yaml", "train_sentences": n_train,
                      "val_sentences": n_val, "pretrain_steps": args.pretrain_steps,
                      "pretrain_val_loss": pre_summary["val_loss"], "finetune_steps": args.steps, "lr": args.lr,
                      "val_bits_per_byte": {k: [round(x, 4) for x in v] for k, v in runs.items()},
                      "mean_bits_per_byte": {k: round(v, 4) for k, v in means.items()},
                      "ratio_init_from_to_scratch": round(means["init_from"] / means["scratch"], 3),
                      **({"lora_rank": args.lora_rank, "lora_lr": args.lora_lr,
                          "ratio_lora_to_scratch": round(means["lora"] / means["scratch"], 3)} if args.lora_rank
                         else {}),
                      "trainable_parameters": trainable,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
