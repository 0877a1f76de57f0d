"""Perception against simulator ground truth over random scenes: recall, precision, centroid error, latency.

    .venv/bin/python bench/perception.py --scenes 200

Ground truth is every scene object resting in a box (the arm is tucked out of view, so none is hidden by
it); a perceived object matches an object when their centres are within 3 cm (one-to-one, Hungarian).
Latency is the segmenter alone on an already rendered frame (rendering is timed separately).
Baselines in the same run, on the same frames:
  - the segmenter as committed at --committed (before the speed-up), loaded from git: old/new latency ratio;
  - plain connected components of the same foreground (no edge-seeded separation): why the watershed exists.
Prints one JSON object.
"""
import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from koba_ros.perception.segmenter import perceive
from koba_ros.sim.cell import SimCell
from koba_ros.sim.scene import random_scene

MATCH = 0.03
ROOT = Path(__file__).resolve().parents[1]


def committed_perceive(rev: str):
    """perceive() as committed at `rev`, loaded from git into a package of its own (its features module too)."""
    package = Path(tempfile.mkdtemp()) / "committed_perception"
    package.mkdir()
    (package / "__init__.py").touch()
    for name in ("segmenter", "features"):
        source = subprocess.run(["git", "show", f"{rev}:koba_ros/perception/{name}.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        source = source.replace("from koba_ros.perception.features import", "from committed_perception.features import")
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(package.parent))
    return importlib.import_module("committed_perception.segmenter").perceive


def score(objects, truth):
    if not objects or not len(truth):
        return 0, []
    seen = np.array([o.position for o in objects])
    cost = np.linalg.norm(seen[:, None, :2] - truth[None, :, :2], axis=2)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < MATCH
    return int(ok.sum()), list(np.linalg.norm(seen[rows[ok]] - truth[cols[ok]], axis=1))


def feature_gap(ours, theirs) -> float:
    """Largest feature difference between the two segmenters' objects paired by position (grounding reads these)."""
    if not ours or not theirs:
        return 0.0
    a, b = np.array([o.position for o in ours]), np.array([o.position for o in theirs])
    rows, cols = linear_sum_assignment(np.linalg.norm(a[:, None] - b[None], axis=2))
    return float(max(np.abs(ours[r].features - theirs[c].features).max() for r, c in zip(rows, cols, strict=True)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--committed", default="0e8b606", help="git revision of the segmenter to compare against")
    args = parser.parse_args()
    old = committed_perceive(args.committed)
    methods = {"edge_seeded_watershed": lambda f: perceive(f.rgb, f.depth, f.K, f.camera_pose),
               f"committed_{args.committed}": lambda f: old(f.rgb, f.depth, f.K, f.camera_pose),
               "baseline_connected_components": lambda f: perceive(f.rgb, f.depth, f.K, f.camera_pose,
                                                                   separate_touching=False)}
    totals = {m: {"truth": 0, "found": 0, "matched": 0, "errors": [], "ms": []} for m in methods}
    render_ms, gaps, same_count = [], [], 0
    for k in tqdm(range(args.scenes), desc="scenes"):
        scene = random_scene(args.seed + k)
        with SimCell(scene) as cell:
            start = time.perf_counter()
            frame = cell.render()
            render_ms.append((time.perf_counter() - start) * 1000)
            truth = np.array([np.mean(cell.object_aabb(i), axis=0) for i in range(len(scene.objects))
                              if cell.object_box(i)])
        found = {}
        for method, run in methods.items():   # same frame, back to back, so the load is alike for all
            start = time.perf_counter()
            found[method] = objects = run(frame)
            t = totals[method]
            t["ms"].append((time.perf_counter() - start) * 1000)
            matched, errors = score(objects, truth)
            t["truth"] += len(truth)
            t["found"] += len(objects)
            t["matched"] += matched
            t["errors"] += errors
        ours, theirs = found["edge_seeded_watershed"], found[f"committed_{args.committed}"]
        same_count += len(ours) == len(theirs)
        gaps.append(feature_gap(ours, theirs))
    new_ms, old_ms = (np.array(totals[m]["ms"]) for m in ("edge_seeded_watershed", f"committed_{args.committed}"))
    out = {"scenes": args.scenes, "objects": totals["edge_seeded_watershed"]["truth"],
           "image": [int(frame.rgb.shape[1]), int(frame.rgb.shape[0])],
           "render_ms_median": round(float(np.median(render_ms)), 1),
           "speedup_committed_over_ours_median": round(float(np.median(old_ms) / np.median(new_ms)), 2),
           "speedup_per_frame_median": round(float(np.median(old_ms / new_ms)), 2),
           "frames_with_same_object_count_as_committed": round(same_count / args.scenes, 4),
           "feature_max_abs_diff_vs_committed_median": round(float(np.median(gaps)), 4)}
    for method, t in totals.items():
        out[method] = {
            "recall": round(t["matched"] / max(t["truth"], 1), 4),
            "precision": round(t["matched"] / max(t["found"], 1), 4),
            "centroid_error_cm_median": round(float(np.median(t["errors"])) * 100, 2),
            "centroid_error_cm_p90": round(float(np.percentile(t["errors"], 90)) * 100, 2),
            "latency_ms_median": round(float(np.median(t["ms"])), 1),
            "latency_ms_p90": round(float(np.percentile(t["ms"], 90)), 1),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
