"""Training scenes from the picking cell: render seeded random scenes, perceive them with the real
segmenter, and label each perceived object with the catalog name of the scene object it is. Each object keeps
its 5x48x48 crop (perception/crops.py, 11.5 KB) for the crop encoder; its full-image mask is dropped.

Rendering + segmentation takes about two seconds a scene, so the perceived objects of each seed range
are cached under ~/.cache/koba_ros/grounding (not in git) and reused by training, the benchmark and tests. The
cache name carries a hash of the code and catalog that make the objects, so a changed segmenter or scene
generator renders again instead of silently reusing old objects (session 5: caches written before two segmenter
changes fed training and every grounding benchmark about a fifth fewer objects than perception finds today).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koba_ros.atomic_write import write_atomically
from koba_ros.perception.objects import PerceivedObject

MATCH_RADIUS = 0.04  # m: a perceived centroid this close to a scene object's is that object


@dataclass
class PerceivedScene:
    seed: int
    objects: list[PerceivedObject]
    names: list[str]            # catalog name of each perceived object
    scene_index: list[int]      # index into the scene file's objects


# The files whose content decides which objects a seed's scene is perceived as (with sim/objects/catalog.yaml).
PERCEPTION_SOURCES = ("perception/segmenter.py", "perception/objects.py", "perception/features.py",
                      "perception/crops.py", "sim/scene.py",
                      "sim/cell.py", "sim/bullet.py", "sim/layout.py", "sim/catalog.py", "grounding/scenes.py")


def perception_version() -> str:
    """A short hash of PERCEPTION_SOURCES and the catalog: part of every scene cache's name."""
    from koba_ros.paths import sim_dir

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in [package / rel for rel in PERCEPTION_SOURCES] + [sim_dir() / "objects" / "catalog.yaml"]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def cache_dir() -> Path:
    root = Path(os.environ.get("KOBA_CACHE", Path.home() / ".cache" / "koba_ros"))
    return root / "grounding"


def label_objects(objects: list[PerceivedObject], truth_xy: np.ndarray) -> list[int | None]:
    """Scene index of each perceived object (nearest ground-truth centre within MATCH_RADIUS), or None."""
    out = []
    for o in objects:
        d = np.linalg.norm(truth_xy - np.asarray(o.position[:2]), axis=1)
        out.append(int(np.argmin(d)) if len(d) and d.min() < MATCH_RADIUS else None)
    return out


def render_and_perceive(seed: int, n_objects: int | None = None) -> PerceivedScene:
    from koba_ros.perception.segmenter import perceive
    from koba_ros.sim.cell import SimCell
    from koba_ros.sim.scene import random_scene

    scene = random_scene(seed, n_objects)
    with SimCell(scene) as cell:
        frame = cell.render()
        truth = np.array([cell.object_position(i)[:2] for i in range(len(scene.objects))])
    objects = perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose)
    labels = label_objects(objects, truth)
    kept = [(o, i) for o, i in zip(objects, labels, strict=False) if i is not None]
    for new_id, (o, _) in enumerate(kept):
        o.id, o.mask = new_id, None   # the full-image mask is not read by the model (the crop carries its window)
    return PerceivedScene(seed, [o for o, _ in kept], [scene.objects[i].name for _, i in kept], [i for _, i in kept])


def perceived_scenes(seeds: range, progress: bool = True) -> list[PerceivedScene]:
    """Perceived scenes for these seeds, rendered once and then read from the cache."""
    path = cache_dir() / f"scenes_{seeds.start}_{seeds.stop}_{perception_version()}.pkl"
    if path.is_file():
        with path.open("rb") as f:
            return pickle.load(f)  # our own cache file, written below
    from tqdm import tqdm

    rng = np.random.default_rng(seeds.start)
    scenes = [render_and_perceive(s, int(rng.integers(3, 41))) for s in tqdm(seeds, desc="render+perceive",
                                                                            disable=not progress)]
    write_atomically(path, lambda tmp: tmp.write_bytes(pickle.dumps(scenes)))  # two processes may render at once
    return scenes
