"""Does document_mask help? Train with and without it on a collection of short documents, score held-out documents
the way the model meets them in use (each alone, from its first token), in one process.

    .venv/bin/python bench/lm_document_mask_quality.py [--seeds 3] [--steps 300]

The robot's spoken-command sentences (speech/domain_lm.domain_sentences) are shuffled and grouped into documents
of 1 to 6 sentences (a folder of files); 90 % of the documents train, 10 % are held out. config/lm/tiny.yaml
(RoPE, byte-level), windows of 64 tokens, so most windows span several documents. For each seed both runs see the
same batches; each held-out document is then scored alone (`koba lm eval --per-document`: windows of 64 tokens,
32 apart, inside the document) and the nats are summed over all of them: bits per byte. Prints one JSON object:
per seed and variant, means and their ratio.
"""
import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from koba_ros.nlp.evaluation import evaluate_checkpoint
from koba_ros.nlp.trainer import TrainConfig, train
from koba_ros.speech.domain_lm import domain_sentences

REPO = Path(__file__).resolve().parents[1]


def documents(seed: int = 0) -> list[str]:
    sentences = sorted(set(domain_sentences()))
    rng = random.Random(seed)
    rng.shuffle(sentences)
    docs, i = [], 0
    while i < len(sentences):
        n = rng.randint(1, 6)
        docs.append("\n".join(sentences[i:i + n]) + "\n")
        i += n
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    docs = documents()
    cut = int(0.9 * len(docs))
    t0 = time.perf_counter()
    results = {"document_mask": [], "plain_causal": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for folder, part in (("train", docs[:cut]), ("held_out", docs[cut:])):
            (tmp / folder).mkdir()
            for i, doc in enumerate(part):
                (tmp / folder / f"{i:05d}.txt").write_text(doc)
        for seed in range(args.seeds):
            for name in results:
                out = tmp / f"{name}{seed}"
                train(TrainConfig.from_file(REPO / "config/lm/tiny.yaml", [
                    f"train_data={tmp / 'train'}", f"steps={args.steps}", "seq_len=64", f"seed={seed}",
                    f"document_mask={'true' if name == 'document_mask' else 'false'}", "progress=false",
                    "tensorboard=false", f"out={out}", "eval_every=100000"]))
                results[name].append(evaluate_checkpoint(out, str(tmp / "held_out"), 64, 32,
                                                         per_document=True)["bits_per_byte"])
    means = {k: statistics.mean(v) for k, v in results.items()}
    print(json.dumps({"bench": "lm_document_mask_quality", "model": "config/lm/tiny.yaml", "seq_len": 64,
                      "train_documents": cut, "held_out_documents": len(docs) - cut, "steps": args.steps,
                      "held_out_bits_per_byte": {k: [round(x, 4) for x in v] for k, v in results.items()},
                      "mean": {k: round(v, 4) for k, v in means.items()},
                      "ratio_mask_to_plain": round(means["document_mask"] / means["plain_causal"], 4),
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
