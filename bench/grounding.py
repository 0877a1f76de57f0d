"""Grounding benchmark: learned model(s) vs the symbolic baseline on held-out phrasings, same scenes, same run.

Scenes: rendered and perceived by the real segmenter (seeds 100000.., never used in training).
Instructions: the "test" split of the generator (templates, box phrasings and synonyms never seen in
training). Prints one JSON object.

    .venv/bin/python bench/grounding.py [--scenes 60] [--models models/grounding/grounding.pt ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from koba_ros.cli import print_json
from koba_ros.grounding.evaluation import bench_samples, evaluate_grounder, latency_ms
from koba_ros.grounding.grounder import Grounder, default_model_path
from koba_ros.grounding.scenes import perceived_scenes, render_and_perceive
from koba_ros.grounding.symbolic import SymbolicGrounder
from koba_ros.grounding.training import make_samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=60, help="Held-out rendered scenes (default 60).")
    ap.add_argument("--models", nargs="*", default=None, help="Learned model files (default: the committed ones).")
    ap.add_argument("--train-scenes", type=int, default=300, help="Scenes the symbolic prototypes are read from.")
    ap.add_argument("--split", choices=["test", "train"], default="test",
                    help="Phrasings: test = held out (default), train = the training phrasings on unseen scenes.")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # more threads were much slower on the shared 2-core machine
    models = args.models or [str(p) for p in sorted(default_model_path().parent.glob("grounding*.pt"))]
    test_scenes = perceived_scenes(range(100000, 100000 + args.scenes), progress=False)
    samples = bench_samples(test_scenes, split=args.split)
    big = render_and_perceive(424242, 40)   # the latency scene: 40 objects, as many as the paper's scenes hold
    latency_texts = [s.text + f" ({k})" for k, s in enumerate(make_samples([big], "test", 40, 99))]
    grounders = {"symbolic": SymbolicGrounder(perceived_scenes(range(0, args.train_scenes), progress=False))}
    for path in models:
        g = Grounder(path)
        name = f"learned_{g.encoder_kind}"
        grounders[name if name not in grounders else f"{name}_{Path(path).stem}"] = g   # two files, one encoder
    result = {"scenes": len(test_scenes), "phrasings": args.split,
              "samples": {k: len(v) for k, v in samples.items()}, "results": {}}
    for name, g in grounders.items():
        start = time.perf_counter()
        metrics = evaluate_grounder(g, samples)
        metrics["latency"] = latency_ms(g, big.objects, latency_texts)
        metrics["eval_seconds"] = round(time.perf_counter() - start, 1)
        result["results"][name] = metrics
    sym = result["results"]["symbolic"]["latency"]["median_ms"]
    for m in result["results"].values():
        m["latency"]["vs_symbolic"] = round(m["latency"]["median_ms"] / max(sym, 1e-6), 1)
    result["latency_objects"] = len(big.objects)
    print_json(result)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
