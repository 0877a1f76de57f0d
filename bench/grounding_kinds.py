"""Does a small CNN on the object crops name an object's KIND (its catalog entry) better than the grounding model?

Experiment for issue #4 (Hatori et al. match CNN crop features against the instruction; our model reads hand-made
colour/shape features). Two namers on the SAME perceived objects of the validation scenes (the last 15% of the
training scenes, as training.py splits them; never the held-out bench scenes 100000+):

  baseline  the default grounding model: (a) argmax of its catalog head's object->entry logits (CatalogMatch
            `classify`, aux "objects"), and (b) the dialogue's noun (Dialogue._names: the noun of NOUNS whose
            "the <noun>" gives the object the highest probability), counted right when the true entry is of that
            noun's kind (NOUN_KINDS).
  cnn       a few conv layers on a square 48x48 crop around the object (RGB, the object's mask, its height above
            the crop's floor from depth) plus the segmenter's 3D size, trained here on the training scenes' crops
            with flips, 90-degree turns and brightness/contrast jitter (shading is what fools the model).

Crops are rendered with the same seeds and object counts as scenes.perceived_scenes(range(0, 300)) and cached per
scene under /tmp/g13/crops (scenes.py's cache is not touched). Prints one JSON object.

    .venv/bin/python bench/grounding_kinds.py --train 0:150 --val 255:300 --epochs 30
    .venv/bin/python bench/grounding_kinds.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np

CROP_DIR = Path("/tmp/g13/crops")
SIDE = 48          # px of the square crop the CNN reads
SCENES_STOP = 300  # training.py's default scene count: object counts are drawn for range(0, 300)
CHANNELS = 5       # R, G, B, mask, height


def object_counts(stop: int = SCENES_STOP) -> list[int]:
    """The n_objects perceived_scenes(range(0, stop)) renders each seed with (one rng seeded by the range start)."""
    rng = np.random.default_rng(0)
    return [int(rng.integers(3, 41)) for _ in range(stop)]


def square_crop(image: np.ndarray, bbox: tuple[int, int, int, int], pad: int = 4) -> np.ndarray:
    """A square window around the bbox (side = its longer edge + 2 pad), zero outside the image, resized to SIDE."""
    import cv2

    x, y, w, h = bbox
    side = max(w, h) + 2 * pad
    x0, y0 = x + w // 2 - side // 2, y + h // 2 - side // 2
    out = np.zeros((side, side, *image.shape[2:]), image.dtype)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(image.shape[1], x0 + side), min(image.shape[0], y0 + side)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def object_crops(rgb: np.ndarray, depth: np.ndarray, objects) -> np.ndarray:
    """(N, CHANNELS, SIDE, SIDE) uint8: RGB, the object's mask, its height above the window's floor (1 unit = 0.4 mm).
    Height rather than raw depth: the camera distance differs across the cell, the object's shape does not."""
    out = np.zeros((len(objects), CHANNELS, SIDE, SIDE), np.uint8)
    for k, o in enumerate(objects):
        out[k, :3] = square_crop(rgb, o.bbox).transpose(2, 0, 1)
        out[k, 3] = square_crop(o.mask.astype(np.uint8) * 255, o.bbox)
        d = square_crop(depth, o.bbox)
        out[k, 4] = np.clip((d.max() - d) * 2500, 0, 255).astype(np.uint8)
    return out


def render_scene(seed: int, n_objects: int) -> dict:
    """Render + perceive one scene like scenes.render_and_perceive, but keep each labelled object's crops."""
    from koba_ros.grounding.scenes import label_objects
    from koba_ros.perception.segmenter import perceive
    from koba_ros.sim.cell import SimCell
    from koba_ros.sim.scene import random_scene

    scene = random_scene(seed, n_objects)
    with SimCell(scene) as cell:
        frame = cell.render()
        truth = np.array([cell.object_position(i)[:2] for i in range(len(scene.objects))])
    objects = perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose)
    kept = [(o, i) for o, i in zip(objects, label_objects(objects, truth), strict=False) if i is not None]
    crops = object_crops(frame.rgb, frame.depth, [o for o, _ in kept])
    for new_id, (o, _) in enumerate(kept):
        o.id, o.crop, o.mask = new_id, None, None   # as scenes.py caches them: what the grounding model reads
    return {"crops": crops, "objects": [o for o, _ in kept],
            "size": np.array([o.size for o, _ in kept], np.float32).reshape(-1, 3),
            "bbox": np.array([o.bbox for o, _ in kept], np.int32).reshape(-1, 4),
            "names": np.array([scene.objects[i].name for _, i in kept])}


def scene_crops(seed: int, counts: list[int]) -> dict:
    """Cached per scene (our own pickle) so a background run fills the cache one file at a time."""
    path = CROP_DIR / f"scene_{seed}.pkl"
    if not path.is_file():
        CROP_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")   # two runs may fill the cache at once
        with tmp.open("wb") as f:
            pickle.dump(render_scene(seed, counts[seed]), f)
        tmp.replace(path)
    with path.open("rb") as f:
        return pickle.load(f)  # our own cache file, written above


def gather(seeds: range, counts: list[int]) -> tuple[dict, list[list]]:
    """The crops of these scenes stacked, and each scene's perceived objects (what the grounding model reads).
    Re-rendered now, not read from the grounding cache: the segmenter changed since that cache was written (a few
    bboxes differ), and both namers must see the same objects."""
    parts = [scene_crops(s, counts) for s in seeds]
    stacked = {k: np.concatenate([p[k] for p in parts]) for k in ("crops", "size", "bbox", "names")}
    return stacked, [p["objects"] for p in parts]


# --- baseline: the grounding model's own naming ----------------------------------------------------------------
def baseline_names(scenes: list[list]) -> tuple[list[str], list[str]]:
    """Per object: the catalog head's entry, and the dialogue's noun (same objects, same model as the dialogue)."""
    import torch

    from koba_ros.grounding.dialogue import NOUNS
    from koba_ros.grounding.grounder import Grounder, batch_inputs

    g = Grounder()
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


# --- the CNN ---------------------------------------------------------------------------------------------------
def make_cnn(n_classes: int):
    from torch import nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    class CropNet(nn.Module):
        """48 -> 24 -> 12 -> 6 -> global average; the object's 3D size joins before the classifier."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(block(CHANNELS, 24), block(24, 48), block(48, 64), block(64, 96))
            self.head = nn.Sequential(nn.Linear(96 + 3, 96), nn.ReLU(), nn.Dropout(0.2), nn.Linear(96, n_classes))

        def features(self, x):
            return self.conv(x).mean((2, 3))

        def forward(self, x, size):
            return self.head(torch.cat([self.features(x), size * 20], 1))

    import torch
    return CropNet()


def augment(x, rng):
    """Flips, 90-degree turns, and per-crop brightness/contrast on RGB (shading changes both)."""
    import torch

    if rng.random() < 0.5:
        x = x.flip(3)
    if rng.random() < 0.5:
        x = x.flip(2)
    x = torch.rot90(x, int(rng.integers(4)), (2, 3))
    b = len(x)
    gain = torch.from_numpy(rng.uniform(0.55, 1.35, (b, 1, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.12, 0.12, (b, 1, 1, 1)).astype(np.float32))
    rgb = (x[:, :3] * gain + shift).clamp(0, 1)
    return torch.cat([rgb, x[:, 3:]], 1)


def train_cnn(train: dict, entries: list[str], epochs: int, seed: int, log) -> object:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(train["crops"]).float() / 255
    size = torch.from_numpy(train["size"])
    y = torch.tensor([entries.index(n) for n in train["names"]])
    net = make_cnn(len(entries))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order, losses, right = torch.from_numpy(rng.permutation(len(y))), [], 0
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            logits = net(augment(x[idx], rng), size[idx])
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            right += int((logits.argmax(1) == y[idx]).sum())
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.3f} train acc {right / len(y):.3f}")
    return net.eval()


def turn_cost(net, scenes: list[list], crops: np.ndarray, repeats: int = 20) -> dict:
    """Per-turn cost on the largest validation scene: the CNN over all its crops vs one grounding turn (the default
    Grounder, one instruction), same process, same thread count. Median of `repeats`."""
    import torch

    from koba_ros.grounding.grounder import Grounder

    k = int(np.argmax([len(s) for s in scenes]))
    start = sum(len(s) for s in scenes[:k])
    x = torch.from_numpy(crops[start:start + len(scenes[k])]).float() / 255
    size = torch.zeros(len(x), 3)
    g = Grounder()
    g.ground("the red cube in the top left box", scenes[k])   # warm: MiniLM and catalog texts load once

    def median_ms(fn) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1000)

    with torch.no_grad():
        cnn_ms = median_ms(lambda: net(x, size))
    turn_ms = median_ms(lambda: g.ground("the red cube in the top left box", scenes[k]))
    return {"objects": len(x), "cnn_ms": round(cnn_ms, 2), "grounding_turn_ms": round(turn_ms, 2),
            "cnn_over_turn": round(cnn_ms / turn_ms, 3)}


def predict(net, data: dict, entries: list[str]) -> list[str]:
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(data["crops"]).float() / 255, torch.from_numpy(data["size"]))
    return [entries[int(k)] for k in logits.argmax(1)]


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
    ap.add_argument("--quick", action="store_true", help="20 training scenes, 10 validation scenes, 3 epochs")
    ap.add_argument("--cached-baseline", action="store_true",
                    help="also score the model on the grounding cache's own objects of the validation scenes "
                         "(scenes.perceived_scenes: the perception it was trained on, if older than today's)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.train, args.val, args.epochs = range(0, 20), range(290, 300), 3
    if args.val.stop > SCENES_STOP or args.train.stop > SCENES_STOP or set(args.train) & set(args.val):
        raise SystemExit(f"scene ranges must lie in 0:{SCENES_STOP} and not overlap")
    import torch

    from koba_ros.sim.catalog import load_catalog

    torch.set_num_threads(args.threads)
    log = print if args.verbose else (lambda *_: None)
    t0 = time.perf_counter()
    counts = object_counts()
    val, val_scenes = gather(args.val, counts)
    train, _ = gather(args.train, counts)
    truth = list(val["names"])
    shaded = shaded_mask(val_scenes, truth)
    heads, nouns = baseline_names(val_scenes)
    t_base = time.perf_counter()
    entries = sorted(load_catalog())
    net = train_cnn(train, entries, args.epochs, args.seed, log)
    t_cnn = time.perf_counter()
    cnn = predict(net, val, entries)
    extra = {}
    if args.cached_baseline:
        from koba_ros.grounding.scenes import perceived_scenes

        cached = perceived_scenes(range(0, SCENES_STOP), progress=False)
        old = [cached[s].objects for s in args.val]
        old_truth = [n for s in args.val for n in cached[s].names]
        old_heads, old_nouns = baseline_names(old)
        old_shaded = shaded_mask(old, old_truth)
        extra = {"cached_val_objects": len(old_truth), "cached_shaded": int(old_shaded.sum()),
                 "cached_baseline_catalog_head": score(old_truth, old_heads, old_shaded),
                 "cached_baseline_dialogue_noun": noun_score(old_truth, old_nouns, old_shaded)}
    print(json.dumps({
        "train_scenes": [args.train.start, args.train.stop], "val_scenes": [args.val.start, args.val.stop],
        "train_objects": len(train["names"]), "val_objects": len(truth), "shaded_val_objects": int(shaded.sum()),
        "epochs": args.epochs, "cnn_params": sum(p.numel() for p in net.parameters()),
        "baseline_catalog_head": score(truth, heads, shaded),
        "baseline_dialogue_noun": noun_score(truth, nouns, shaded),
        "cnn": score(truth, cnn, shaded),
        "errors_catalog_head_vs_cnn": agreement(truth, heads, cnn),
        "turn_cost_largest_val_scene": turn_cost(net, val_scenes, val["crops"]),
        **extra, "cnn_train_s": round(t_cnn - t_base, 1), "total_s": round(time.perf_counter() - t0, 1)}, indent=1))


if __name__ == "__main__":
    main()
