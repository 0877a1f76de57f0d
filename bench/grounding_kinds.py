"""Does a small CNN on the object crops name an object's KIND (its catalog entry) better than the grounding model?

Experiment for issue #4 (Hatori et al. match CNN crop features against the instruction). Namers on the SAME perceived
objects of the validation scenes (the last 15% of the training scenes, as training.py splits them; never the held-out
bench scenes 100000+):

  models    grounding models (default: the committed grounding.pt): (a) argmax of the catalog head's object->entry
            logits (CatalogMatch `classify`, aux "objects"), and (b) the dialogue's noun (Dialogue._names: the noun of
            NOUNS whose "the <noun>" gives the object the highest probability), counted right when the true entry is
            of that noun's kind (NOUN_KINDS). A model with the crop encoder (`koba train grounding --crops`) reads
            the crops too.
  cnn       grounding/crop_encoder.py's trunk + a kind head on perception/crops.py's 48x48 crops (RGB, the object's
            mask, its height above the crop's floor) plus the segmenter's 3D size, trained here on the training
            scenes' crops with flips, 90-degree turns and brightness/contrast jitter (shading is what fools the model).

Objects come from scenes.perceived_scenes(range(0, 300)) (the training cache, crops included: the segmenter fills
them). Prints one JSON object.

    .venv/bin/python bench/grounding_kinds.py --train 0:255 --val 255:300 --epochs 20
    .venv/bin/python bench/grounding_kinds.py --no-cnn --models models/grounding/grounding.pt /tmp/crop/grounding.pt
    .venv/bin/python bench/grounding_kinds.py --quick
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

SCENES_STOP = 300  # training.py's default scene count: the cache of range(0, 300) holds train and validation scenes


def gather(seeds: range) -> tuple[list[list], list[str]]:
    """Each scene's perceived objects (crops included) and every object's catalog entry, from the training cache."""
    from koba_ros.grounding.scenes import perceived_scenes

    scenes = perceived_scenes(range(0, SCENES_STOP))
    return [scenes[s].objects for s in seeds], [n for s in seeds for n in scenes[s].names]


# --- baseline: the grounding model's own naming ----------------------------------------------------------------
def model_names(scenes: list[list], model: str | None = None) -> tuple[list[str], list[str]]:
    """Per object: the catalog head's entry, and the dialogue's noun (same objects, same model as the dialogue)."""
    import torch

    from koba_ros.grounding.dialogue import NOUNS
    from koba_ros.grounding.grounder import Grounder, batch_inputs

    g = Grounder(model)
    m = g.members[0]
    entries = m.net.catalog.entries
    heads, nouns = [], []
    with torch.no_grad():
        for objects in scenes:
            aux = {}
            m.net(*batch_inputs(["the object"], [objects], m.encoder, m.net, m.appearance_dim), aux=aux)
            heads += [entries[int(k)] for k in aux["objects"][0, :len(objects)].argmax(-1)]
            probs = np.array([gr.target_probs for gr in g.ground_batch([f"the {n}" for n in NOUNS],
                                                                        [objects] * len(NOUNS))])
            nouns += [NOUNS[int(k)] for k in probs[:, :-1].argmax(0)]
    return heads, nouns


def turn_cost(net, scenes: list[list], repeats: int = 20) -> dict:
    """Per-turn cost on the largest validation scene: the crop CNN over all its crops vs one grounding turn (the
    default Grounder, one instruction), same process, same thread count. Median of `repeats`."""
    import torch

    from koba_ros.grounding.crop_encoder import crop_tensor
    from koba_ros.grounding.grounder import Grounder

    objects = max(scenes, key=len)
    x, size = crop_tensor(objects), torch.zeros(len(objects), 3)
    g = Grounder()
    g.ground("the red cube in the top left box", objects)   # warm: MiniLM and catalog texts load once

    def median_ms(fn) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1000)

    with torch.no_grad():
        cnn_ms = median_ms(lambda: net(x, size))
    turn_ms = median_ms(lambda: g.ground("the red cube in the top left box", objects))
    return {"objects": len(x), "cnn_ms": round(cnn_ms, 2), "grounding_turn_ms": round(turn_ms, 2),
            "cnn_over_turn": round(cnn_ms / turn_ms, 3)}


# --- scoring ---------------------------------------------------------------------------------------------------
def same_kind(a: str, b: str) -> bool:
    """Do two catalog entries share a dialogue noun's kind (a red and a blue cube: yes)?"""
    from koba_ros.grounding.dialogue import NOUN_KINDS

    return a == b or any(a in k and b in k for k in NOUN_KINDS.values())


def score(truth: list[str], named: list[str], shaded: np.ndarray) -> dict:
    right = np.array([t == n for t, n in zip(truth, named, strict=True)])
    kind = np.array([same_kind(t, n) for t, n in zip(truth, named, strict=True)])
    wrong = Counter(f"{t} -> {n}" for t, n in zip(truth, named, strict=True) if t != n)
    return {"entry_acc": round(float(right.mean()), 4), "kind_acc": round(float(kind.mean()), 4),
            "entry_acc_shaded": round(float(right[shaded].mean()), 4) if shaded.any() else None,
            "entry_acc_unshaded": round(float(right[~shaded].mean()), 4) if (~shaded).any() else None,
            "errors": int((~right).sum()), "top_confusions": dict(wrong.most_common(10))}


def noun_score(truth: list[str], nouns: list[str], shaded: np.ndarray) -> dict:
    from koba_ros.grounding.dialogue import NOUN_KINDS

    right = np.array([t in NOUN_KINDS[n] for t, n in zip(truth, nouns, strict=True)])
    wrong = Counter(f"{t} -> '{n}'" for t, n, r in zip(truth, nouns, right, strict=True) if not r)
    return {"kind_acc": round(float(right.mean()), 4),
            "kind_acc_shaded": round(float(right[shaded].mean()), 4) if shaded.any() else None,
            "kind_acc_unshaded": round(float(right[~shaded].mean()), 4) if (~shaded).any() else None,
            "errors": int((~right).sum()), "top_confusions": dict(wrong.most_common(10))}


def agreement(truth: list[str], baseline: list[str], cnn: list[str]) -> dict:
    """Where the two namers' errors fall: the same objects (likely perception or labelling) or different ones."""
    b = np.array([t != n for t, n in zip(truth, baseline, strict=True)])
    c = np.array([t != n for t, n in zip(truth, cnn, strict=True)])
    return {"both_wrong": int((b & c).sum()), "only_baseline_wrong": int((b & ~c).sum()),
            "only_cnn_wrong": int((~b & c).sum())}


def shaded_mask(scenes: list[list], truth: list[str]) -> np.ndarray:
    """Objects whose camera colour word (segmenter attribute color:*) is not their catalog colour."""
    from koba_ros.sim.catalog import load_catalog

    catalog = load_catalog()
    seen = [next((a.split(":", 1)[1] for a in o.attributes if a.startswith("color:")), "") for objects in scenes
            for o in objects]
    return np.array([s != catalog[t].color for s, t in zip(seen, truth, strict=True)])


def span(text: str) -> range:
    a, b = text.split(":")
    return range(int(a), int(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=span, default=span("0:150"), help="training scene seeds, a:b")
    ap.add_argument("--val", type=span, default=span("255:300"), help="validation scene seeds (training.py's last 45)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=[None], help="grounding models to score (default: grounding.pt)")
    ap.add_argument("--no-cnn", action="store_true", help="score the models only (no CNN training)")
    ap.add_argument("--quick", action="store_true", help="20 training scenes, 10 validation scenes, 3 epochs")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.train, args.val, args.epochs = range(0, 20), range(290, 300), 3
    if args.val.stop > SCENES_STOP or args.train.stop > SCENES_STOP or set(args.train) & set(args.val):
        raise SystemExit(f"scene ranges must lie in 0:{SCENES_STOP} and not overlap")
    import torch

    from koba_ros.grounding.crop_encoder import predict_kinds, pretrain
    from koba_ros.sim.catalog import load_catalog

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    val_scenes, truth = gather(args.val)
    shaded = shaded_mask(val_scenes, truth)
    result = {"val_scenes": [args.val.start, args.val.stop], "val_objects": len(truth),
              "shaded_val_objects": int(shaded.sum()), "models": {}}
    heads_of = {}
    for model in args.models:
        heads, nouns = model_names(val_scenes, model)
        heads_of[model or "grounding.pt"] = heads
        result["models"][model or "grounding.pt"] = {"catalog_head": score(truth, heads, shaded),
                                                      "dialogue_noun": noun_score(truth, nouns, shaded)}
    if not args.no_cnn:
        train_scenes, train_names = gather(args.train)
        entries = sorted(load_catalog())
        t_cnn = time.perf_counter()
        net = pretrain([o for objects in train_scenes for o in objects], train_names, entries, args.epochs,
                       args.seed, log=print if args.verbose else None)
        cnn_s = time.perf_counter() - t_cnn
        cnn = predict_kinds(net, [o for objects in val_scenes for o in objects], entries)
        first = next(iter(heads_of))
        result.update({
            "train_scenes": [args.train.start, args.train.stop], "train_objects": len(train_names),
            "epochs": args.epochs, "cnn_params": sum(p.numel() for p in net.parameters()),
            "cnn": score(truth, cnn, shaded),
            f"errors_{first}_catalog_head_vs_cnn": agreement(truth, heads_of[first], cnn),
            "turn_cost_largest_val_scene": turn_cost(net, val_scenes), "cnn_train_s": round(cnn_s, 1)})
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
