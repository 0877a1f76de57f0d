"""A second opinion on what kind of object something is, from its crop alone (no words).

The grounding models read the instruction and the objects together, and on unseen wording they can share one confusion
with certainty: "the green block" when only a green cylinder is here moves the green cylinder, and the dialogue's own
check of the kind (the model's noun for the pick) shares the confusion. Hatori et al. (ICRA 2018, arXiv 1710.06280,
Sec. III-B) match CNN features of the cropped object image against the instruction; this is that CNN with its kind
head kept: crop_encoder.KindClassifier (4 conv blocks on the 5x48x48 crop + the segmenter's 3D size -> catalog
entry), trained alone on the training scenes' objects and saved with its entries, so the dialogue can ask "is the pick
of the kind the words name?" of something that never saw the words.

    p(entry | crop_i, size_i) = softmax(head([c_i, 20 size_i]))         c_i as in crop_encoder.py
    mass_i(K) = sum_{e in K} p(e | crop_i, size_i)                        K: the entries the words name (any colour)

`koba train crop-kinds` trains and writes models/grounding/crop_kinds.pt (about 0.5 MB).
"""
from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError, reason
from koba_ros.grounding.crop_encoder import CropEncoder, KindClassifier, crop_tensor, pretrain
from koba_ros.perception.crops import CHANNELS, SIDE
from koba_ros.perception.objects import PerceivedObject


def default_path() -> Path:
    from koba_ros.paths import models_dir

    return models_dir() / "grounding" / "crop_kinds.pt"


class CropKinds:
    """The kind classifier and the catalog entries its outputs stand for."""

    def __init__(self, net: KindClassifier, entries: list[str]):
        self.net, self.entries = net.eval(), list(entries)

    @classmethod
    def load(cls, path: str | Path) -> CropKinds:
        path = Path(path)
        if not path.is_file():
            raise KobaError(f"crop kind classifier {path} not found; train it with `koba train crop-kinds`")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            entries = list(ckpt["entries"])
            net = KindClassifier(CropEncoder(), len(entries))
            net.load_state_dict(ckpt["state_dict"])
        except Exception as exc:  # a foreign or corrupt file: one line, nothing half-loaded
            raise KobaError(f"cannot read crop kind classifier {path}: {reason(exc)}") from None
        return cls(net, entries)

    def save(self, path: str | Path, summary: dict) -> None:
        """Written whole or not at all: the dialogue reads this file, so a stopped run must not leave half of one."""
        write_atomically(path, lambda tmp: torch.save(
            {"state_dict": self.net.state_dict(), "entries": self.entries, "summary": summary}, tmp))

    @torch.no_grad()
    def probs(self, objects: list[PerceivedObject]) -> np.ndarray:
        """[N, entries] probabilities; a row of NaN for an object without a usable crop (no opinion, not a guess)."""
        out = np.full((len(objects), len(self.entries)), np.nan)
        usable = [i for i, o in enumerate(objects) if o.crop is not None and np.shape(o.crop) == (CHANNELS, SIDE, SIDE)
                  and len(np.ravel(o.size)) == 3 and np.all(np.isfinite(o.size))]
        if usable:
            objs = [objects[i] for i in usable]
            size = torch.tensor([list(np.ravel(o.size)) for o in objs], dtype=torch.float32)
            out[usable] = torch.softmax(self.net(crop_tensor(objs), size), 1).double().numpy()
        return out

    def mass(self, probs_row: np.ndarray, entries: set[str]) -> float:
        """mass_i(K): the probability the crop gives to the entries named (NaN without a crop)."""
        return float(sum(probs_row[k] for k, e in enumerate(self.entries) if e in entries))


@lru_cache(maxsize=4)
def load_cached(path: str) -> CropKinds:
    return CropKinds.load(path)


def train_crop_kinds(scenes: int = 600, epochs: int = 20, seed: int = 0, out: str | Path | None = None,
                     log=print) -> dict:
    """Pretrain the classifier on the first 85 % of the training scenes' objects (training.py's split), measure its
    kind accuracy on the other 15 %, save it. Returns a summary."""
    from koba_ros.grounding.scenes import perceived_scenes
    from koba_ros.sim.catalog import load_catalog

    t0 = time.perf_counter()
    rendered = perceived_scenes(range(0, scenes))
    n_val = max(1, int(len(rendered) * 0.15))
    train, val = rendered[:-n_val], rendered[-n_val:]
    entries = sorted(load_catalog())
    net = pretrain([o for s in train for o in s.objects], [n for s in train for n in s.names], entries, epochs, seed,
                   log=log)
    kinds = CropKinds(net, entries)
    val_objects, truth = [o for s in val for o in s.objects], [n for s in val for n in s.names]
    named = [entries[int(k)] for k in np.nanargmax(kinds.probs(val_objects), 1)]
    summary = {"scenes": scenes, "epochs": epochs, "seed": seed, "train_objects": sum(len(s.objects) for s in train),
               "val_objects": len(truth), "val_kind_acc": round(float(np.mean([a == b for a, b in
                                                                               zip(named, truth, strict=True)])), 4),
               "seconds": round(time.perf_counter() - t0, 1)}
    path = Path(out) if out else default_path()
    kinds.save(path, summary)
    summary["weights"] = str(path)
    return summary
