"""Perception against simulator ground truth over random scenes: recall, precision, centroid error, latency.

    .venv/bin/python bench/perception.py --scenes 200

Ground truth is every scene object resting in a box (the arm is tucked out of view, so none is hidden by
it); a perceived object matches an object when their centres are within 3 cm (one-to-one, Hungarian).
Baseline in the same run: plain connected components of the same foreground (no edge-seeded separation).
Prints one JSON object.
"""
import argparse
import json
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from koba_ros.perception.segmenter import perceive
from koba_ros.sim.cell import SimCell
from koba_ros.sim.scene import random_scene

MATCH = 0.03


def score(objects, truth):
    if not objects or not len(truth):
        return 0, []
    seen = np.array([o.position for o in objects])
    cost = np.linalg.norm(seen[:, None, :2] - truth[None, :, :2], axis=2)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < MATCH
    return int(ok.sum()), list(np.linalg.norm(seen[rows[ok]] - truth[cols[ok]], axis=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    methods = {"edge_seeded_watershed": True, "baseline_connected_components": False}
    totals = {m: {"truth": 0, "found": 0, "matched": 0, "errors": [], "ms": []} for m in methods}
    render_ms = []
    for k in tqdm(range(args.scenes), desc="scenes"):
        scene = random_scene(args.seed + k)
        with SimCell(scene) as cell:
            start = time.perf_counter()
            frame = cell.render()
            render_ms.append((time.perf_counter() - start) * 1000)
            truth = np.array([np.mean(cell.object_aabb(i), axis=0) for i in range(len(scene.objects))
                              if cell.object_box(i)])
        for method, separate in methods.items():
            start = time.perf_counter()
            objects = perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose, separate_touching=separate)
            t = totals[method]
            t["ms"].append((time.perf_counter() - start) * 1000)
            matched, errors = score(objects, truth)
            t["truth"] += len(truth)
            t["found"] += len(objects)
            t["matched"] += matched
            t["errors"] += errors
    out = {"scenes": args.scenes, "objects": totals["edge_seeded_watershed"]["truth"],
           "image": [int(frame.rgb.shape[1]), int(frame.rgb.shape[0])],
           "render_ms_median": round(float(np.median(render_ms)), 1)}
    for method, t in totals.items():
        out[method] = {
            "recall": round(t["matched"] / max(t["truth"], 1), 4),
            "precision": round(t["matched"] / max(t["found"], 1), 4),
            "centroid_error_cm_median": round(float(np.median(t["errors"])) * 100, 2),
            "centroid_error_cm_p90": round(float(np.percentile(t["errors"], 90)) * 100, 2),
            "latency_ms_median": round(float(np.median(t["ms"])), 1),
            "latency_over_render": round(float(np.median(t["ms"]) / np.median(render_ms)), 2),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
