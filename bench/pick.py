"""Pick-and-place success over random scenes (simulator ground truth), per catalog object; sim speed.

    .venv/bin/python bench/pick.py --scenes 100

Each scene: a random scene, a random target among the objects perception sees, a random other box. Success
is ground truth that the target rests in that box afterwards. Baseline in the same run: success at the first
attempt (what the picker would score without its one retry after a drop). Also measures how fast the cell
runs headless while rendering the camera at 5 Hz (sim seconds per wall second; >= 1 is real time).
Prints one JSON object.
"""
import argparse
import json
import threading
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from koba_ros.paths import sim_dir
from koba_ros.picking.session import CellSession
from koba_ros.sim.cell import TIME_STEP, SimCell
from koba_ros.sim.layout import BOXES
from koba_ros.sim.realtime import RealTimeLoop
from koba_ros.sim.scene import load_scene, random_scene


def sim_speed(seconds: float) -> dict:
    """Real-time loop on the demo scene; and the same work unpaced (how much faster than real time it could go)."""
    scene = load_scene(sim_dir() / "scenes" / "demo.json")
    with SimCell(scene) as cell:
        loop = RealTimeLoop(cell, camera_hz=5.0)
        loop.run(threading.Event(), duration=seconds)
        paced = {"sim_per_wall": round(loop.sim_elapsed / loop.wall_elapsed, 3),
                 "camera_hz": round(loop.frames / loop.wall_elapsed, 2)}
        start, sim0 = time.perf_counter(), cell.time
        while cell.time - sim0 < seconds:
            cell.step(int(0.2 / TIME_STEP))
            cell.render()
        unpaced = (cell.time - sim0) / (time.perf_counter() - start)
    return {"paced": paced, "capacity_sim_per_wall_at_5hz_camera": round(unpaced, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--speed-seconds", type=float, default=10.0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
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
            result = session.pick(index, obj, destination)
            ok = session.resting_box(index) == destination
            motion_s.append(session.timing_ms["motion"] / 1000)
        name = scene.objects[index].name
        per_object[name]["tries"] += 1
        per_object[name]["success"] += int(ok)
        per_object[name]["first_attempt"] += int(ok and result.attempts == 1)
        if not ok:
            failures.append({"scene_seed": args.seed + k, "object": name, "message": result.message})
    tries = sum(v["tries"] for v in per_object.values())
    out = {
        "picks": tries,
        "success_rate": round(sum(v["success"] for v in per_object.values()) / max(tries, 1), 4),
        "baseline_first_attempt_only": round(sum(v["first_attempt"] for v in per_object.values()) / max(tries, 1), 4),
        "per_object": {n: {**v, "rate": round(v["success"] / v["tries"], 3)} for n, v in sorted(per_object.items())},
        "wall_s_per_pick_median": round(float(np.median(motion_s)), 2) if motion_s else None,
        "failures": failures,
        "sim_speed": sim_speed(args.speed_seconds),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
