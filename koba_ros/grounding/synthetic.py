"""Synthetic perceived objects drawn from the catalog, with segmenter-like noise.

Used for fast unit tests and the property test (no rendering). The committed model is trained on
rendered scenes perceived by the real segmenter (koba_ros.grounding.scenes); these objects only
imitate what that segmenter reports: a bounding box in the overhead image, a shaded and noisy mean
colour, a noisy size, and a handful of mask shape descriptors.
"""
from __future__ import annotations

import numpy as np

from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import BOXES, load_catalog

IMAGE_W, IMAGE_H = 640, 480
PX_PER_M = 900.0
BOX_CENTRE_PX = {"top_left": (165, 125), "top_right": (475, 125), "bottom_left": (165, 355),
                 "bottom_right": (475, 355)}
# Rough footprint/height (m) of the mesh objects, whose catalog entry gives no size.
MESH_SIZE = {"duck": (0.05, 0.04, 0.045), "teddy_bear": (0.05, 0.045, 0.06), "soccer_ball": (0.05, 0.05, 0.05),
             "lego_brick": (0.05, 0.025, 0.03), "jenga_block": (0.045, 0.015, 0.009), "domino": (0.05, 0.025, 0.01)}
# Mask shape descriptors: fill of the bbox, circularity, texture contrast, highlight.
SHAPE_DESCRIPTORS = {
    "cube": (0.97, 0.78, 0.05, 0.3), "ball": (0.78, 0.98, 0.08, 0.7), "cylinder": (0.79, 0.95, 0.05, 0.4),
    "duck": (0.70, 0.70, 0.10, 0.4), "bear": (0.65, 0.62, 0.25, 0.1), "mug": (0.72, 0.80, 0.10, 0.5),
    "brick": (0.95, 0.70, 0.15, 0.4), "block": (0.96, 0.55, 0.12, 0.2), "tile": (0.96, 0.68, 0.60, 0.3)}


def entry_size(name: str) -> tuple[float, float, float]:
    entry = load_catalog()[name]
    if name in MESH_SIZE:
        return MESH_SIZE[name]
    s = entry.size
    if entry.primitive == "box":
        return tuple(s)
    if entry.primitive == "sphere":
        return (s[0], s[0], s[0])
    return (s[0], s[0], s[1])  # cylinder, mug


def random_scene(rng: np.random.Generator, n_objects: int | None = None) -> list[dict]:
    """Scene-file style objects: [{"name", "box", "xy"}], names drawn with replacement (duplicates happen)."""
    names = list(load_catalog())
    n = int(n_objects or rng.integers(3, 21))
    out = []
    for _ in range(n):
        out.append({"name": str(rng.choice(names)), "box": str(rng.choice(BOXES)),
                    "xy": [float(v) for v in rng.uniform(-0.1, 0.1, size=2)]})
    return out


def perceive_synthetic(scene: list[dict], rng: np.random.Generator) -> list[PerceivedObject]:
    """PerceivedObjects as a noisy segmenter would report the scene (ids = scene indices)."""
    catalog = load_catalog()
    objects = []
    for i, spec in enumerate(scene):
        entry = catalog[spec["name"]]
        size = np.array(entry_size(spec["name"])) * rng.normal(1.0, 0.08, 3)
        cx, cy = BOX_CENTRE_PX[spec["box"]]
        u = cx + spec["xy"][0] * PX_PER_M + rng.normal(0, 2)
        v = cy + spec["xy"][1] * PX_PER_M + rng.normal(0, 2)
        w, h = max(size[0], size[1]) * PX_PER_M, min(size[0], size[1]) * PX_PER_M
        shade = rng.uniform(0.65, 1.0)
        rgb = np.clip(np.array(entry.rgba[:3]) * shade + rng.normal(0, 0.03, 3), 0, 1)
        descriptor = np.array(SHAPE_DESCRIPTORS[entry.shape]) + rng.normal(0, 0.05, 4)
        objects.append(PerceivedObject(
            id=i, bbox=(int(u - w / 2), int(v - h / 2), int(w), int(h)),
            position=(0.5 - spec["xy"][1], -spec["xy"][0], 0.02), size=tuple(float(s) for s in size),
            box=spec["box"], mean_rgb=tuple(float(c) for c in rgb),
            features=np.concatenate([descriptor, [size[2] * 10]]).astype(np.float32)))
    return objects
