"""Grounding benchmark: learned model(s) vs the symbolic baseline on held-out phrasings, same scenes, same run.

Scenes: rendered and perceived by the real segmenter (seeds 100000.., never used in training).
Instructions: the "test" split of the generator (templates, box phrasings and synonyms never seen in
training). Prints one JSON object.

A model with the catalog head reads the catalog's texts, which list the held-out object words ("can",
"round thing") although training never said them. `--without-catalog-words` adds the same model reading
the catalog without the held-out and validation words: what it does for words the catalog does not list.

    .venv/bin/python bench/grounding.py [--scenes 60] [--first-scene 100000] [--models FILE ...]

Default models: the default grounder (models/grounding/grounding_default.json, a deep ensemble) and its first member
alone (models/grounding/grounding.pt), so the ensemble's cost per turn is read against the single model's:
`cpu_vs_reference` is each learned model's CPU time per turn over that of the first single model among --models
(`cpu_reference` names it; the first learned model when every one is an ensemble).
`crop_kinds` is the CPU time of the crop CNN's second opinion on an object's kind (grounding/crop_kinds.py): the
dialogue reads it for its pick (and the few objects the model names by the kind said), each object once per
instruction.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from koba_ros.cli import print_json
from koba_ros.commands.arg_types import positive_int
from koba_ros.errors import KobaError
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.evaluation import bench_samples, evaluate_grounder, latency_ms
from koba_ros.grounding.grounder import Grounder, default_model_path, single_model_path
from koba_ros.grounding.instructions import UNSEEN_WORDS
from koba_ros.grounding.scenes import perceived_scenes, render_and_perceive
from koba_ros.grounding.symbolic import SymbolicGrounder
from koba_ros.grounding.training import make_samples
from koba_ros.sim.catalog import load_catalog


def cpu_ms(grounder, objects, texts: list[str]) -> float:
    """Median CPU time (ms) of one grounding turn: on this shared, overloaded machine wall time is mostly waiting
    for a core, so the CPU time says what a turn costs on an idle one (one torch thread)."""
    grounder.ground(texts[0], objects)
    times = []
    for t in texts[1:]:
        start = time.process_time()
        grounder.ground(t, objects)
        times.append((time.process_time() - start) * 1000)
    return float(np.median(times))


def crop_kinds_cpu_ms(objects, repeats: int = 21) -> dict:
    """Median CPU time (ms) of the crop CNN's kind probabilities for one object (what the dialogue reads for its pick)
    and for all of these objects in one pass (the most it could read)."""
    from koba_ros.grounding.crop_kinds import CropKinds, default_path

    net = CropKinds.load(default_path())
    out = {"objects": len(objects)}
    for name, objs in (("one_object_cpu_median_ms", objects[:1]), ("all_objects_cpu_median_ms", objects)):
        net.probs(objs)
        times = []
        for _ in range(repeats):
            start = time.process_time()
            net.probs(objs)
            times.append((time.process_time() - start) * 1000)
        out[name] = float(np.median(times))
    return out


def cpu_relative_to_single(results: dict, grounders: dict) -> str | None:
    """Add each learned grounder's CPU time per turn over the first single model's (by default the ensemble comes
    first, so "the first learned" would have been the ensemble itself); the first learned one's if all are
    ensembles. Returns the reference's name, None without learned grounders."""
    learned = [name for name in results if name != "symbolic"]
    if not learned:
        return None
    reference = next((name for name in learned if len(grounders[name].members) == 1), learned[0])
    base = max(results[reference]["latency"]["cpu_median_ms"], 1e-6)
    for name in learned:
        results[name]["latency"]["cpu_vs_reference"] = round(results[name]["latency"]["cpu_median_ms"] / base, 2)
    return reference


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=positive_int, default=60, help="Held-out rendered scenes (default 60).")
    ap.add_argument("--first-scene", type=int, default=100000,
                    help="Seed of the first scene (default 100000; 100200 and 100400 are the other held-out sets).")
    ap.add_argument("--models", nargs="*", default=None,
                    help="Learned model files (default: the default grounder and its first member); an ensemble "
                         "file (.json) or members "
                         "joined by '+' is a deep ensemble.")
    ap.add_argument("--train-scenes", type=positive_int, default=300,
                    help="Scenes the symbolic prototypes are read from.")
    ap.add_argument("--split", choices=["test", "train", "val", "val2"], default="test",
                    help="Phrasings: test = held out (default), train = the training phrasings on unseen scenes, "
                         "val, val2 = the two validation splits.")
    ap.add_argument("--without-catalog-words", action="store_true",
                    help="Also run each catalog model with the held-out/validation words taken out of its catalog.")
    ap.add_argument("--no-symbolic", action="store_true", help="Skip the symbolic baseline (its latency is the unit).")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # more threads were much slower on the shared 2-core machine
    models = args.models or [str(default_model_path()), str(single_model_path())]
    loaded = [Grounder(path.split("+") if "+" in path else path) for path in models]  # a bad file before rendering
    test_scenes = perceived_scenes(range(args.first_scene, args.first_scene + args.scenes), progress=False)
    samples = bench_samples(test_scenes, split=args.split)
    big = render_and_perceive(424242, 40)   # the latency scene: 40 objects, as many as the paper's scenes hold
    latency_texts = [s.text + f" ({k})" for k, s in enumerate(make_samples([big], "test", 40, 99))]
    grounders = {}
    if not args.no_symbolic:
        grounders["symbolic"] = SymbolicGrounder(perceived_scenes(range(0, args.train_scenes), progress=False))
    for path, g in zip(models, loaded, strict=True):
        name = f"learned_{g.encoder_kind}"
        if len(g.members) > 1:
            name = "ensemble_" + "+".join(m.path.stem for m in g.members)
        name = name if name not in grounders else f"{name}_{Path(path).parent.name}_{Path(path).stem}"  # one encoder
        grounders[name] = g
        if args.without_catalog_words and len(g.members) == 1 and g.net.catalog is not None:
            blind = Grounder(path)
            blind.net.set_catalog(catalog_phrases(load_catalog(), blind.net.catalog.entries,
                                                  leave_out=UNSEEN_WORDS), blind.encoder)
            grounders[f"{name}_catalog_without_held_out_words"] = blind
    result = {"scenes": len(test_scenes), "first_scene": args.first_scene, "phrasings": args.split,
              "samples": {k: len(v) for k, v in samples.items()}, "results": {}}
    for name, g in grounders.items():
        start = time.perf_counter()
        metrics = evaluate_grounder(g, samples)
        metrics["latency"] = latency_ms(g, big.objects, latency_texts)
        metrics["latency"]["cpu_median_ms"] = cpu_ms(g, big.objects, [t + " ." for t in latency_texts])
        metrics["eval_seconds"] = round(time.perf_counter() - start, 1)
        result["results"][name] = metrics
    if "symbolic" in result["results"]:
        sym = result["results"]["symbolic"]["latency"]["median_ms"]
        for m in result["results"].values():
            m["latency"]["vs_symbolic"] = round(m["latency"]["median_ms"] / max(sym, 1e-6), 1)
    result["cpu_reference"] = cpu_relative_to_single(result["results"], grounders)
    result["latency_objects"] = len(big.objects)
    result["crop_kinds"] = crop_kinds_cpu_ms(big.objects)
    print_json(result)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    try:
        sys.exit(main())
    except KobaError as exc:  # a bad model file or setting: one line, as the koba command gives it
        sys.exit(f"bench/grounding.py: error: {exc}")
