"""Spoken teleop of the simulated cell in this process: parse → plan → start motion, with "stop" preempting.

Commands start motion and return at once (as the ROS controller interface does); the caller
advances physics with step(). A "stop" holds the arm where it is on the very next physics
step, which is how a JointTrajectoryController treats an empty trajectory.
"""
from __future__ import annotations

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.sim.cell import TIME_STEP, SimCell
from koba_ros.teleop.commands import parse_command
from koba_ros.teleop.jog import JogPlanner, TeleopPlan


class SimTeleop:
    def __init__(self, cell: SimCell, planner: JogPlanner | None = None):
        self.cell = cell
        self.planner = planner or JogPlanner()

    def say(self, text: str) -> TeleopPlan:
        """Start the command in `text`; KobaError (a sentence to speak) for anything not understood or reachable."""
        plan = self.planner.plan(parse_command(text), self.cell.arm_positions(), self.cell.gripper_width(),
                                 self.cell.gripper_target)
        if plan.kind == "stop":
            self.cell.stop_arm()
            self.cell.set_gripper(self.cell.gripper_width())   # the fingers hold where they are too
        elif plan.trajectory is not None:
            self.cell.follow(plan.trajectory)
        else:
            self.cell.set_gripper(plan.gripper_width)
        return plan

    def step(self, seconds: float) -> None:
        self.cell.step(max(1, int(round(seconds / TIME_STEP))))

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Advance physics until the motion is done (plus a short settle); False on timeout."""
        waited = 0.0
        while not self.cell.trajectory_done() and waited < timeout_s:
            self.step(0.05)
            waited += 0.05
        self.step(0.3)   # let the controller catch up and the fingers settle
        return self.cell.trajectory_done()

    def reply(self, plan: TeleopPlan) -> str:
        """What the robot says once `plan` has run (wait()): a jog that ended short of its target says so."""
        return self.planner.arrival_reply(plan, self.cell.arm_positions())

    def tool_position(self) -> np.ndarray:
        return np.asarray(self.cell.tool_pose()[0])


def run_once(text: str) -> dict:
    """`koba teleop --say TEXT`: one command in a fresh, empty sim cell; the result as a dict."""
    from koba_ros.sim.scene import Scene

    with SimCell(Scene(seed=0, objects=())) as cell:
        teleop = SimTeleop(cell)
        before = teleop.tool_position()
        try:
            plan = teleop.say(text)
        except KobaError as exc:
            teleop.planner.close()
            return {"text": text, "accepted": False, "command": None, "reply": str(exc),
                    "tool_before": before.round(4).tolist(), "tool_after": before.round(4).tolist(), "moved_m": 0.0}
        finished = teleop.wait()
        after, reply = teleop.tool_position(), teleop.reply(plan)
        teleop.planner.close()
        result = {"text": text, "accepted": True, "command": plan.kind, "reply": reply, "finished": bool(finished),
                  "tool_before": before.round(4).tolist(), "tool_after": after.round(4).tolist(),
                  "moved_m": round(float(np.linalg.norm(after - before)), 4),
                  "gripper_width_m": round(cell.gripper_width(), 4), "sim_time_s": round(cell.time, 2)}
        if plan.target is not None:
            result["target_error_m"] = round(float(np.linalg.norm(after - np.asarray(plan.target))), 4)
        return result
