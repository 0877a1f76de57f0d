"""Pick-and-place success over random scenes (simulator ground truth), per catalog object; sim speed.

    .venv/bin/python bench/pick.py --scenes 100

Each scene: a random scene, a random target among the objects perception sees, a random other box. Success
is ground truth that the target rests in that box afterwards. Baseline in the same run: success at the first
attempt (what the picker would score without its one retry after a drop). --only domino,blue_cube runs just
the picks of those objects (the same scenes, targets and boxes as the full run). Sim speed: bench/sim_speed.py.
Prints one JSON object.
"""
import argparse
import json
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from koba_ros.picking.session import CellSession
from koba_ros.sim.layout import BOXES
from koba_ros.sim.scene import random_scene


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--only", default="", help="comma-separated catalog names: pick only these targets")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    only = set(filter(None, args.only.split(",")))
    per_object = defaultdict(lambda: {"tries": 0, "success": 0, "first_attempt": 0})
    failures = []
    motion_s = []
    for k in tqdm(range(args.scenes), desc="picks"):
        scene = random_scene(args.seed + k)
        with CellSession(scene) as session:
            _, objects = session.look()
            visible = {idx: oid for oid, idx in session.scene_index_of(objects).items()}
            if not visible:
                continue
            index = int(rng.choice(sorted(visible)))
            obj = next(o for o in objects if o.id == visible[index])
            destination = str(rng.choice([b for b in BOXES if b != obj.box]))
            if only and scene.objects[index].name not in only:
                continue
            result = session.pick(index, obj, destination)
            ok = session.resting_box(index) == destination
            motion_s.append(session.timing_ms["motion"] / 1000)
        name = scene.objects[index].name
        per_object[name]["tries"] += 1
        per_object[name]["success"] += int(ok)
        per_object[name]["first_attempt"] += int(ok and result.attempts == 1)
        if not ok:
            failures.append({"scene_seed": args.seed + k, "object": name, "target": index, "destination": destination,
                             "message": result.message})
    tries = sum(v["tries"] for v in per_object.values())
    out = {
        "picks": tries,
        "success_rate": round(sum(v["success"] for v in per_object.values()) / max(tries, 1), 4),
        "baseline_first_attempt_only": round(sum(v["first_attempt"] for v in per_object.values()) / max(tries, 1), 4),
        "per_object": {n: {**v, "rate": round(v["success"] / v["tries"], 3)} for n, v in sorted(per_object.items())},
        "wall_s_per_pick_median": round(float(np.median(motion_s)), 2) if motion_s else None,
        "failures": failures,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
