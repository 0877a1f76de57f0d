"""One simulated picking session without ROS: a cell, its camera view, perception, and picks by scene index.

`koba pick` and the benchmarks use this; the spoken-instruction path adds grounding between `look()` and
`pick()`. Ground truth (which scene object is which perceived object, where an object rests) comes from the
simulator and is used only to map indices and to score, never to perceive or to plan.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from koba_ros.errors import KobaError
from koba_ros.perception.objects import PerceivedObject
from koba_ros.perception.segmenter import perceive
from koba_ros.picking.cell_arm import CellArm
from koba_ros.picking.picker import Picker, PickResult, Target
from koba_ros.picking.placement import place_among
from koba_ros.sim.cell import Frame, SimCell
from koba_ros.sim.scene import Scene

MATCH_DISTANCE = 0.03   # m between a perceived centroid and an object's true centre to call them the same


def target_of(obj: PerceivedObject) -> Target:
    return Target.of(obj)


def place_for(obj: PerceivedObject, destination: str, objects: list[PerceivedObject]) -> tuple[float, float] | None:
    """The roomiest spot in `destination` given the perceived objects already there."""
    return place_among(destination, objects, obj.size, obj.id)


@dataclass
class CellSession:
    scene: Scene
    gui: bool = False
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        start = time.perf_counter()
        self.cell = SimCell(self.scene, gui=self.gui)
        self.picker = Picker(CellArm(self.cell, real_time=self.gui))
        self.last_objects: list[PerceivedObject] = []
        self._clock("setup", start)

    def _clock(self, stage: str, start: float) -> None:
        self.timing_ms[stage] = round(self.timing_ms.get(stage, 0.0) + (time.perf_counter() - start) * 1000, 1)

    def look(self) -> tuple[Frame, list[PerceivedObject]]:
        """Render the overhead camera and perceive the objects."""
        start = time.perf_counter()
        frame = self.cell.render()
        self._clock("render", start)
        start = time.perf_counter()
        objects = perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose)
        self._clock("perceive", start)
        self.last_objects = objects
        return frame, objects

    def true_centres(self) -> np.ndarray:
        return np.array([np.mean(self.cell.object_aabb(i), axis=0) for i in range(len(self.scene.objects))])

    def scene_index_of(self, objects: list[PerceivedObject]) -> dict[int, int]:
        """Perceived id -> scene index, by nearest true centre (one-to-one, within MATCH_DISTANCE)."""
        if not objects:
            return {}
        truth = self.true_centres()[:, :2]
        seen = np.array([o.position[:2] for o in objects])
        cost = np.linalg.norm(seen[:, None] - truth[None], axis=2)
        rows, cols = linear_sum_assignment(cost)
        return {objects[r].id: int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < MATCH_DISTANCE}

    def perceived(self, objects: list[PerceivedObject], index: int) -> PerceivedObject | None:
        """The perceived object that is scene object `index`, or None when perception does not see it."""
        self.cell._check_index(index)
        by_id = {o.id: o for o in objects}
        for obj_id, scene_index in self.scene_index_of(objects).items():
            if scene_index == index:
                return by_id[obj_id]
        return None

    def plan(self, obj: PerceivedObject, destination: str) -> None:
        """Check that the pick is possible (goal, reach, limits) without moving; KobaError says why not."""
        start = time.perf_counter()
        try:
            self.picker.check_goal(target_of(obj), destination)
            lift = self.picker.plan_pick(target_of(obj), self.cell.arm_positions())
            self.picker.plan_place(destination, obj.size[2], lift["q_lift"],
                                   place_for(obj, destination, self.last_objects))
        finally:
            self._clock("plan", start)

    def pick(self, index: int, obj: PerceivedObject, destination: str,
             progress: Callable[[str, float], None] | None = None,
             cancel: threading.Event | None = None) -> PickResult:
        """Move scene object `index` (seen as `obj`) into `destination`, retrying once if it drops."""

        def locate(last: Target) -> Target | None:
            _, objects = self.look()
            again = self.perceived(objects, index)
            return target_of(again) if again is not None else None

        start = time.perf_counter()
        try:
            return self.picker.pick_place(target_of(obj), destination, progress=progress, cancel=cancel,
                                          locate=locate, verify=lambda: self.cell.object_box(index) == destination,
                                          place_xy=place_for(obj, destination, self.last_objects))
        finally:
            self._clock("motion", start)

    def resting_box(self, index: int) -> str | None:
        """Simulator ground truth: the box scene object `index` rests in now."""
        return self.cell.object_box(index)

    def close(self) -> None:
        self.cell.close()
        self.picker.kin.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_index(scene: Scene, index: int) -> None:
    if not 0 <= index < len(scene.objects):
        raise KobaError(f"target {index} is not an object of the scene (0..{len(scene.objects) - 1})")
