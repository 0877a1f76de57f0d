"""How fast the simulated cell runs headless while rendering the camera: real-time factor and camera rate.

    .venv/bin/python bench/sim_speed.py --seconds 20

The sim_node loop (RealTimeLoop) on the demo scene, paced to the wall clock with the camera at --camera-hz:
sim seconds per wall second (>= 1 is real time) and camera frames per wall second, three ways in one run:
  - baseline_full_render: the full TinyRenderer render every frame (SimCell(static_layer=False)), in the loop;
  - composite_static_layer: arm and objects rendered over the pre-rendered table and boxes, in the loop;
  - render_process: the composite rendered in a separate process (what sim_node runs headless).
For the in-loop ways also the unpaced capacity: physics and a render every 1/camera-hz of sim time as fast as
the machine allows. Prints one JSON object.
"""
import argparse
import json
import threading
import time

from koba_ros.paths import sim_dir
from koba_ros.sim.cell import TIME_STEP, SimCell
from koba_ros.sim.realtime import RealTimeLoop
from koba_ros.sim.render_process import RenderProcess
from koba_ros.sim.scene import load_scene


def paced(cell: SimCell, seconds: float, camera_hz: float, renderer: RenderProcess | None = None) -> dict:
    loop = RealTimeLoop(cell, camera_hz=camera_hz, renderer=renderer)
    loop.run(threading.Event(), duration=seconds)
    return {"real_time_factor": round(loop.sim_elapsed / loop.wall_elapsed, 3),
            "camera_hz": round(loop.frames / loop.wall_elapsed, 2)}


def measure(static_layer: bool, seconds: float, camera_hz: float) -> dict:
    scene = load_scene(sim_dir() / "scenes" / "demo.json")
    with SimCell(scene, static_layer=static_layer) as cell:
        in_loop = paced(cell, seconds, camera_hz)
        start, sim0, renders = time.perf_counter(), cell.time, 0.0
        while cell.time - sim0 < seconds / 2:
            cell.step(round(1 / camera_hz / TIME_STEP))
            t = time.perf_counter()
            cell.render()
            renders += time.perf_counter() - t
        wall = time.perf_counter() - start
    return {"paced": in_loop, "unpaced_sim_per_wall": round((cell.time - sim0) / wall, 3),
            "render_share_of_wall": round(renders / wall, 3)}


def render_process(seconds: float, camera_hz: float) -> dict:
    scene = load_scene(sim_dir() / "scenes" / "demo.json")
    with SimCell(scene) as cell, RenderProcess(scene) as renderer:
        renderer.request(cell.pose())
        renderer.poll(timeout=60.0)                     # the render process is up before the clock starts
        return {"paced": paced(cell, seconds, camera_hz, renderer)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--camera-hz", type=float, default=5.0)
    args = parser.parse_args()
    out = {"camera_hz_requested": args.camera_hz, "seconds": args.seconds,
           "composite_static_layer": measure(True, args.seconds, args.camera_hz),
           "render_process": render_process(args.seconds, args.camera_hz),
           "baseline_full_render": measure(False, args.seconds, args.camera_hz)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
