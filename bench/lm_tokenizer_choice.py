"""A vocabulary learned from the data (`koba lm tokenizer`) against bytes, at the same model and compute, in one
process.

    .venv/bin/python bench/lm_tokenizer_choice.py [--seeds 3] [--steps 300] [--vocab-size 512]

The robot's spoken-command sentences (speech/domain_lm.domain_sentences) are shuffled and split 90/10 into a
training and a validation file; a BPE of `--vocab-size` entries is learned from the training file alone. Then
config/lm/tiny.yaml (d 64, 2 layers, RoPE) trains for the same steps on the same number of tokens per step (16 x 64)
with each tokenizer; the BPE model differs only in its embedding table and head (vocab_size rows instead of 259).
`koba lm eval` scores the validation file in bits per byte, which do not depend on the tokenizer. Prints one JSON
object: per seed and tokenizer, means and their ratio.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from command_corpus import write_command_split

from koba_ros.nlp.bpe_training import train_bpe
from koba_ros.nlp.evaluation import evaluate_checkpoint
from koba_ros.nlp.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = {"byte": [], "bpe": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_train, n_val = write_command_split(tmp)
        bpe = train_bpe(str(tmp / "train.txt"), args.vocab_size, tmp / "bpe")
        settings = {"byte": [],
                    "bpe": ["tokenizer=bpe", f"vocab={bpe['vocab']}", f"merges={bpe['merges']}",
                            f"model.vocab_size={args.vocab_size}", f"model.pad_id={bpe['eos_id']}"]}
        for seed in range(args.seeds):
            for name in results:
                out = tmp / f"{name}{seed}"
                train(TrainConfig.from_file(REPO / "config/lm/tiny.yaml", [
                    f"train_data={tmp / 'train.txt'}", f"val_data={tmp / 'val.txt'}", f"steps={args.steps}",
                    f"seed={seed}", "progress=false", "tensorboard=false", f"out={out}", "eval_every=100000",
                    *settings[name]]))
                results[name].append(evaluate_checkpoint(out, str(tmp / "val.txt"))["bits_per_byte"])
    means = {k: statistics.mean(v) for k, v in results.items()}
    print(json.dumps({"bench": "lm_tokenizer_choice", "model": "config/lm/tiny.yaml", "steps": args.steps,
                      "tokens_per_step": 16 * 64, "bpe_vocab_size": args.vocab_size,
                      "bpe_bytes_per_token_train": bpe["bytes_per_token"],
                      "val_bits_per_byte": {k: [round(x, 4) for x in v] for k, v in results.items()},
                      "mean": {k: round(v, 4) for k, v in means.items()},
                      "ratio_bpe_to_byte": round(means["bpe"] / means["byte"], 4),
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
