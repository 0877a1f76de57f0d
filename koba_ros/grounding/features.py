"""Per-object and pairwise feature vectors the object encoder reads, from PerceivedObjects.

Object: mean colour (RGB and hue on the circle), size, the box (one-hot), where it sits in its box
relative to the other objects there (ranks left->right and top->bottom, extremes) and the segmenter's
appearance vector. Pair (i, j): image offset in object widths and whether they share a box; the
relation module uses it for "the cube to the left of the duck".
"""
from __future__ import annotations

import colorsys

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import BOXES

BASE_DIM = 3 + 3 + 3 + 4 + 6
PAIR_DIM = 4


def _centres(objects: list[PerceivedObject]) -> np.ndarray:
    return np.array([(o.bbox[0] + o.bbox[2] / 2, o.bbox[1] + o.bbox[3] / 2) for o in objects], dtype=np.float32)


def object_features(objects: list[PerceivedObject], appearance_dim: int) -> np.ndarray:
    """(N, BASE_DIM + appearance_dim) float32."""
    n = len(objects)
    out = np.zeros((n, BASE_DIM + appearance_dim), dtype=np.float32)
    if n == 0:
        return out
    centres = _centres(objects)
    for i, o in enumerate(objects):
        rgb = np.clip(np.asarray(o.mean_rgb, dtype=np.float32), 0, 1)
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        mates = [j for j, m in enumerate(objects) if m.box == o.box]
        xr = sum(centres[j, 0] < centres[i, 0] for j in mates) / max(len(mates) - 1, 1)
        yr = sum(centres[j, 1] < centres[i, 1] for j in mates) / max(len(mates) - 1, 1)
        box = np.zeros(4, np.float32)
        if o.box in BOXES:
            box[BOXES.index(o.box)] = 1
        place = [xr, yr, float(xr == 0 and len(mates) > 1), float(xr == 1 and len(mates) > 1), len(mates) / 10,
                 float(len(mates) == 1)]
        size = np.clip(np.asarray(o.size, dtype=np.float32) * 20, 0, 5)
        out[i, :BASE_DIM] = np.concatenate([rgb, [np.cos(2 * np.pi * h) * s, np.sin(2 * np.pi * h) * s, v], size, box,
                                            place])
        if appearance_dim:
            if o.features is None:
                raise KobaError(f"object {o.id} has no appearance features; the model expects {appearance_dim}")
            f = np.asarray(o.features, dtype=np.float32).ravel()
            if f.size != appearance_dim:
                raise KobaError(f"object {o.id} has {f.size} appearance features; the model expects {appearance_dim}")
            out[i, BASE_DIM:] = np.nan_to_num(f)
    return out


def pair_features(objects: list[PerceivedObject]) -> np.ndarray:
    """(N, N, PAIR_DIM) float32: dx, dy (in median object widths), distance, same box."""
    n = len(objects)
    if n == 0:
        return np.zeros((0, 0, PAIR_DIM), np.float32)
    c = _centres(objects)
    scale = max(float(np.median([o.bbox[2] for o in objects])), 1.0)
    d = (c[:, None, :] - c[None, :, :]) / scale
    boxes = np.array([o.box for o in objects])
    same = (boxes[:, None] == boxes[None, :]).astype(np.float32)
    dist = np.linalg.norm(d, axis=-1)
    return np.concatenate([np.tanh(d / 3), np.tanh(dist / 3)[..., None], same[..., None]], axis=-1).astype(np.float32)
