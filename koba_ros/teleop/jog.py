"""Teleop planning: a parsed command + the arm's joints now → a joint trajectory or a gripper width, or a refusal.

Cartesian jogs are straight tool lines at the current orientation, solved by the picking
planner's IK (koba_ros.picking.kinematics / motion.line_move), so teleop and picking move the
arm the same way and within the same joint limits. A target outside the picking workspace, one IK cannot reach
pointing the same way, or one the gripper cannot get to in a straight line without touching the table or a box
(picking.workspace.line_hit: the fingers as wide as they are or are commanded to be; as open as they go when their
width is not known), is refused with a sentence the robot says.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.picking.kinematics import PandaKinematics
from koba_ros.picking.motion import joint_move, line_move
from koba_ros.picking.workspace import Workspace, line_hit, yaw_of
from koba_ros.sim.cell import GRIPPER_MAX_WIDTH, HOME
from koba_ros.sim.trajectory import JointTrajectory, validate
from koba_ros.teleop.commands import Command, Gripper, Home, Jog, Stop

OUT_OF_REACH = "That is out of my reach."
# Not "Stopping.": speech_node listens for "stop" while the robot talks, and that reply would be heard as one.
STOP_REPLY = "Holding still."
ARRIVAL_TOLERANCE = 0.003   # m from the target a jog's tool must end for "Moved ...": further, the reply says so


@dataclass
class TeleopPlan:
    kind: str                                 # jog | home | gripper | stop
    reply: str                                # what the robot says once it is done (teleop_node: after the motion)
    trajectory: JointTrajectory | None = None
    gripper_width: float | None = None
    target: tuple[float, float, float] | None = None   # tool position the plan ends at (jog)
    words: str = ""                           # the jog as said ("left 5 centimeters")


class JogPlanner:
    def __init__(self, kinematics: PandaKinematics | None = None, workspace: Workspace | None = None,
                 home=HOME):
        self.kin = kinematics or PandaKinematics()
        self.workspace = workspace or Workspace()
        self.home = np.asarray(home, dtype=np.float64)

    def plan(self, command: Command, q_now, finger_width: float | None = None,
             gripper_target: float | None = None) -> TeleopPlan:
        """KobaError(OUT_OF_REACH) when a jog leaves the workspace or IK; the arm state is not touched.
        `finger_width`: m between the fingers now (None: not known); `gripper_target`: the width they were last told to
        go to (None: not known), for a jog's wall check."""
        q_now = np.asarray(q_now, dtype=np.float64)
        if isinstance(command, Stop):
            return TeleopPlan("stop", STOP_REPLY)
        if q_now.shape != self.home.shape or not np.all(np.isfinite(q_now)):
            raise KobaError("I do not know where my arm is: its joint positions are not numbers.")
        if isinstance(command, Gripper):
            width = GRIPPER_MAX_WIDTH if command.open else 0.0
            return TeleopPlan("gripper", "Opened the gripper." if command.open else "Closed the gripper.",
                              gripper_width=width)
        if isinstance(command, Home):
            traj = joint_move(q_now, self.home, self.kin.max_velocity)
            try:
                validate(traj, self.kin.limits, q_now)  # from joints outside their limits there is no safe way
            except KobaError as exc:
                raise KobaError(f"I can't go home from here: {exc}.") from None
            return TeleopPlan("home", "Back home.", traj)
        if isinstance(command, Jog):
            start, orientation = self.kin.fk(q_now)
            target = start + np.asarray(command.direction) * command.distance
            if not self.workspace.contains(target):
                raise KobaError(OUT_OF_REACH)
            # The path with the widest the fingers can be on the way (as they are, or opening to their target; as
            # open as they go when not known); a touch at the start excused only if real at their width now (when
            # not known, closed: a touch only open fingers made let a closed gripper be jogged through a wall).
            known = finger_width is not None and np.isfinite(finger_width)
            width = max(finger_width, gripper_target or 0.0) if known else GRIPPER_MAX_WIDTH
            hit = line_hit(start, target, yaw_of(orientation), min(width, GRIPPER_MAX_WIDTH),
                           finger_width if known else 0.0)
            if hit is not None:
                raise KobaError(f"That would hit the {hit}.")
            try:
                traj, _ = line_move(self.kin, q_now, start, target, orientation)
                validate(traj, self.kin.limits, q_now)  # every plan within the joints' limits and speeds
            except KobaError:
                raise KobaError(OUT_OF_REACH) from None
            return TeleopPlan("jog", f"Moved {command.words}.", traj, target=tuple(float(v) for v in target),
                              words=command.words)
        raise KobaError(f"unknown teleop command {command!r}")

    def arrival_reply(self, plan: TeleopPlan, q_now) -> str:
        """What to say once the plan's motion is over, the arm at `q_now`: its reply, unless a jog's tool ended further
        than ARRIVAL_TOLERANCE from its target (something in the way), which is said instead."""
        if plan.target is None:
            return plan.reply
        q_now = np.asarray(q_now, dtype=np.float64)
        if q_now.shape != self.home.shape or not np.all(np.isfinite(q_now)):
            return "I do not know where my arm ended up."
        short = float(np.linalg.norm(self.kin.fk(q_now)[0] - np.asarray(plan.target)))
        if short <= ARRIVAL_TOLERANCE:
            return plan.reply
        return f"I could not move all the way {plan.words}: I am {short * 100:.1f} centimeters short."

    def close(self) -> None:
        self.kin.close()
