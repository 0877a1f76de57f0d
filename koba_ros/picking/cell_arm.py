"""The Picker's Arm protocol over a SimCell in this process: physics advances while the arm moves."""
from __future__ import annotations

import threading
import time

import numpy as np

from koba_ros.sim.cell import TIME_STEP, SimCell
from koba_ros.sim.trajectory import JointTrajectory

SETTLE_S = 0.15          # the controller catching up after the last waypoint
GRIPPER_TIMEOUT_S = 1.0


class CellArm:
    def __init__(self, cell: SimCell, real_time: bool = False):
        self.cell = cell
        self.real_time = real_time    # pace physics to the wall clock (for watching in the GUI)

    def joint_positions(self) -> np.ndarray:
        return self.cell.arm_positions()

    def _step(self, n: int = 1) -> None:
        self.cell.step(n)
        if self.real_time:
            time.sleep(TIME_STEP * n)

    def execute(self, traj: JointTrajectory, cancel: threading.Event) -> bool:
        self.cell.follow(traj)
        while not self.cell.trajectory_done():
            if cancel.is_set():
                self.cell.stop_arm()
                return False
            self._step(4)
        self._step(int(SETTLE_S / TIME_STEP))
        return not cancel.is_set()

    def gripper(self, width: float, cancel: threading.Event) -> float:
        self.cell.set_gripper(width)
        last, waited = self.cell.gripper_width(), 0.0
        while waited < GRIPPER_TIMEOUT_S and not cancel.is_set():
            self._step(12)
            waited += 12 * TIME_STEP
            now = self.cell.gripper_width()
            if abs(now - last) < 2e-4 and waited > 0.15:
                break
            last = now
        return self.cell.gripper_width()
