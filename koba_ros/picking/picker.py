"""Top-down pick and place: plan, then approach, grasp, lift, transfer, release, verify, home.

The Picker talks to any arm through the small `Arm` protocol (joint positions, execute a JointTrajectory,
gripper width), so the same code drives SimCell directly (`koba pick`, benchmarks) or a controller over
ROS topics (picker_node). Every stage's trajectory is planned with IK inside the joint limits and checked
against the workspace before the arm moves; cancel is polled while the arm moves and stops it.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.picking.kinematics import PandaKinematics, top_down
from koba_ros.picking.motion import concat, joint_move, line_move
from koba_ros.picking.workspace import FINGERTIP_BELOW_TOOL, Workspace, finger_room
from koba_ros.sim.layout import BOXES, box_regions
from koba_ros.sim.trajectory import JointTrajectory, validate

HOME = (0.0, -1.2, 0.0, -2.9, 0.0, 1.75, 0.785)   # tucked out of the camera's view (SimCell.HOME)
MAX_OPENING = 0.08
CLEAR_Z = 0.20              # m above the table for moves between boxes
APPROACH_HEIGHT = 0.10      # m above the grasp point before descending
HELD_MIN_WIDTH = 0.004      # m; fingers closer than this hold nothing
RELEASE_GAP = 0.005        # m; fingers this much further apart than when holding have let go
WALL_MARGIN = 0.004         # m a goal's x, y keeps inside a box's walls (perceived centres: >= 5.8 mm, docs)
OPENING_MARGIN = 0.025      # m more than the object's width across the fingers (a finger pad each side, clear)
# m, the most an object may measure any way (size, width): a box is 0.21 m inside (0.297 m corner to corner), so nothing
# longer lies in one; and held at 0.45 of its height, a taller one would hang below the wall tops (6 cm) at CLEAR_Z.
MAX_OBJECT_SIZE = 0.30
STAGES = ("approach", "grasp", "lift", "transfer", "release", "verify", "home")


class Arm(Protocol):
    def joint_positions(self) -> np.ndarray: ...
    def execute(self, traj: JointTrajectory, cancel: threading.Event) -> bool: ...   # False when cancelled
    def gripper(self, width: float, cancel: threading.Event) -> float: ...            # settled width


@dataclass(frozen=True)
class Target:
    position: tuple[float, float, float]    # object centroid, base_link
    size: tuple[float, float, float]        # extent along x, y, z (zeros: unknown)
    yaw: float | None = None                # long-axis angle; None: choose from size
    width: float = 0.0                      # footprint width across the long axis, m; 0: unknown

    @staticmethod
    def of(obj) -> Target:
        """The target a PerceivedObject describes."""
        return Target(tuple(obj.position), tuple(obj.size), obj.yaw, obj.width)


@dataclass
class PickResult:
    success: bool
    message: str
    stage: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class Planned(JointTrajectory):
    """A checked trajectory and the joints it was planned from, which `_run` joins the arm to. Its first waypoint is a
    step along it: joined to that, an arm already at the start stood still there for the step's time."""
    start: np.ndarray | None = None


class Cancelled(Exception):
    def __init__(self, after_release: bool = False):
        super().__init__()
        self.after_release = after_release   # the fingers had let go over the box: the object is down


def grasp_yaw(target: Target) -> float:
    """Close the fingers across the object's short side (fingers close along (sin yaw, -cos yaw)).

    A squarish object against a box wall is taken the other way round, so no finger has to go between
    the object and the wall.
    """
    if target.yaw is not None:
        base = _wrap_half_turn(target.yaw)      # long axis along yaw -> fingers close across it
    else:
        base = 0.0 if target.size[0] >= target.size[1] else math.pi / 2
    if max(target.size[:2]) > MAX_OPENING - 0.015:
        return base
    turned = _wrap_half_turn(base + math.pi / 2)
    # Room for the fingers as they will really be opened (not the object's extent: an open finger on a wall
    # top stops the descent).
    room = {yaw: _finger_room(target, yaw, grasp_opening(target, yaw)) for yaw in (base, turned)}
    return turned if room[turned] > room[base] + 0.004 else base


def grasp_opening(target: Target, yaw: float) -> float:
    """How far to open before descending: the object's width across the fingers plus a margin, no wider.

    Opening to the object's widest extent put a finger on a neighbour in cluttered boxes (a domino, 3.5 cm
    across but 7 cm long, opened the gripper to its full 8 cm). The measured width holds when the fingers
    close across the long axis; turned along a wall, or with no width measured, the larger extent is used.
    """
    across_long_axis = target.yaw is not None and abs(_wrap_half_turn(yaw - _wrap_half_turn(target.yaw))) < 1e-6
    width = target.width / 0.94 if target.width > 0 and across_long_axis else max(target.size[0], target.size[1])
    if width <= 0:   # nothing known of its size (a position-only goal): 2.5 cm would come down on the object
        return MAX_OPENING
    return min(MAX_OPENING, width + OPENING_MARGIN)


def _finger_room(target: Target, yaw: float, width: float) -> float:
    """Clearance from the box walls of two fingers opened `width` apart, closing along (sin yaw, -cos yaw)."""
    return finger_room(target.position[0], target.position[1], yaw, width)


def _region_at(position, margin: float = WALL_MARGIN):
    """The box whose inside holds the position's x, y at least `margin` from its walls, or None."""
    return next((r for r in box_regions().values() if r.contains(position[0], position[1], margin)), None)


def _wrap_half_turn(yaw: float) -> float:
    """A parallel gripper is symmetric under half a turn: keep yaw in [-pi/2, pi/2) (the wrist's easy range)."""
    return (yaw + math.pi / 2) % math.pi - math.pi / 2


class Picker:
    def __init__(self, arm: Arm, kinematics: PandaKinematics | None = None, workspace: Workspace | None = None):
        self.arm = arm
        self.kin = kinematics or PandaKinematics()
        self.workspace = workspace or Workspace()

    # --- planning (no motion) -------------------------------------------------------------------
    def check_goal(self, target: Target, destination: str) -> None:
        """KobaError with the reason when the goal is impossible; nothing moves."""
        if destination not in BOXES:   # echoed cut short: a client may send anything, 200,000 characters too
            shown = f"{destination!r:.40}" + ("..." if len(repr(destination)) > 40 else "")
            raise KobaError(f"unknown destination {shown}; boxes: {', '.join(BOXES)}")
        if np.shape(target.position) != (3,) or np.shape(target.size) != (3,):   # x, y, z each; unpacked below
            raise KobaError(f"target position and size need 3 numbers each, got {target.position!r:.80}, "
                            f"{target.size!r:.80}")
        yaw = () if target.yaw is None else (target.yaw,)   # NaN would hang PyBullet's IK (kinematics.ik)
        if not all(math.isfinite(v) for v in (*target.position, *target.size, *yaw, target.width)):
            raise KobaError("target position, size, yaw or width is not a number")
        if min(*target.size, target.width) < 0:   # a negative height planned the fingers below the box floor
            raise KobaError(f"object size and width must not be negative, got size {tuple(target.size)}, "
                            f"width {target.width}")
        if not self.workspace.contains(target.position):
            raise KobaError(self.workspace.why_not(target.position))
        if min(target.size[0], target.size[1]) > MAX_OPENING - 0.01:
            raise KobaError(f"object is {min(target.size[:2]) * 100:.3g} cm across: wider than the gripper opens")
        if max(*target.size, target.width) > MAX_OBJECT_SIZE:   # a 1e300 m height planned the grasp 4.5e299 m up
            raise KobaError(f"object is {max(*target.size, target.width) * 100:.3g} cm long: over "
                            f"{MAX_OBJECT_SIZE * 100:.3g} cm, more than a box holds")
        # Objects lie inside a box; elsewhere the open fingers would come down on a wall top or between boxes.
        if _region_at(target.position) is None:
            x, y = target.position[:2]
            raise KobaError(f"({x:.3g}, {y:.3g}) m is not inside a box ({WALL_MARGIN * 100:.2g} cm clear of its "
                            f"walls): the fingers would come down on a wall or beside the boxes")

    def _checked(self, traj: JointTrajectory, start: np.ndarray) -> Planned:
        """Every trajectory leaves here within joint limits and with every waypoint's tool inside the workspace."""
        validate(traj, self.kin.limits, start)
        for q in traj.positions:
            tool = self.kin.fk(q)[0]
            if not self.workspace.contains(tool) and not _near_home(q):
                raise KobaError(f"planned motion leaves the workspace: {self.workspace.why_not(tool)}")
        return Planned(traj.joint_names, traj.times, traj.positions, np.asarray(start, dtype=np.float64))

    def plan_pick(self, target: Target, q_start) -> dict[str, JointTrajectory]:
        """Trajectories for approach, descend, lift (grasp in between). Raises KobaError if unreachable."""
        x, y, z = target.position
        height = target.size[2] if target.size[2] > 0 else 0.04
        region = _region_at(target.position, 0.0)
        # A claimed bottom below the box floor would press the fingertips into the floor.
        bottom = max(z - height / 2, region.floor_z if region else 0.0)
        # Fingers around the object's middle, their tips never pressed into the floor (pressed, they cannot close).
        grasp_z = bottom + max(0.45 * height, FINGERTIP_BELOW_TOOL + 0.002)
        orientation = top_down(grasp_yaw(target))
        above = (x, y, grasp_z + APPROACH_HEIGHT)
        q_above = self.kin.ik(above, orientation)
        approach = self._checked(joint_move(q_start, q_above, self.kin.max_velocity), q_start)
        descend, q_grasp = line_move(self.kin, q_above, above, (x, y, grasp_z), orientation)
        lift, q_lift = line_move(self.kin, q_grasp, (x, y, grasp_z), (x, y, max(CLEAR_Z, grasp_z + 0.1)), orientation)
        return {"approach": approach, "descend": self._checked(descend, q_above),
                "lift": self._checked(lift, q_grasp), "q_lift": q_lift}

    def plan_place(self, destination: str, height: float, q_start,
                   place_xy: tuple[float, float] | None = None) -> dict[str, JointTrajectory]:
        region = box_regions()[destination]
        x, y = place_xy if place_xy is not None else region.centre
        if not region.contains(x, y):
            raise KobaError(f"place point ({x:.2f}, {y:.2f}) is not inside box {destination}")
        orientation = top_down(0.0)
        q_over = self.kin.ik((x, y, CLEAR_Z), orientation, seed=q_start)
        transfer = self._checked(joint_move(q_start, q_over, self.kin.max_velocity), q_start)
        release_z = region.floor_z + height + 0.03
        lower, q_low = line_move(self.kin, q_over, (x, y, CLEAR_Z), (x, y, release_z), orientation)
        up, q_up = line_move(self.kin, q_low, (x, y, release_z), (x, y, CLEAR_Z), orientation)
        home = joint_move(q_up, HOME, self.kin.max_velocity)
        return {"transfer": transfer, "lower": self._checked(lower, q_over),
                "retreat": self._checked(concat(up, home), q_low)}

    # --- execution --------------------------------------------------------------------------------
    def pick_place(self, target: Target, destination: str, *, progress: Callable[[str, float], None] | None = None,
                   cancel: threading.Event | None = None, locate: Callable[[Target], Target | None] | None = None,
                   verify: Callable[[], bool | None] | None = None,
                   place_xy: tuple[float, float] | None = None) -> PickResult:
        """Run the whole pick; `locate` re-finds a dropped object for the one retry, `verify` checks the result,
        `place_xy` is where in the destination box to put it down (default: the box centre)."""
        cancel = cancel or threading.Event()
        progress = progress or (lambda stage, fraction: None)
        try:
            self.check_goal(target, destination)
        except KobaError as exc:
            return PickResult(False, f"rejected: {exc}")
        for attempt in (1, 2):
            try:
                outcome = self._attempt(target, destination, progress, cancel, place_xy)
            except Cancelled as stopped:
                if stopped.after_release:   # the object is down: a "stop" on the way back changes nothing there
                    return PickResult(True, f"placed in {destination} (not verified: cancelled after the release; "
                                      "the arm stopped)", "release", attempt)
                return PickResult(False, "cancelled; the arm stopped", attempts=attempt)
            except KobaError as exc:
                self._go_home(cancel)
                return PickResult(False, f"failed: {exc}", attempts=attempt)
            if outcome == "placed":
                # Home first: over the box the arm hides the object from the overhead camera, and the object
                # has time to settle.
                self._go_home(cancel)
                if cancel.is_set():   # no verifying (a wait for perception) after a stop
                    return PickResult(True, f"placed in {destination} (not verified: cancelled on the way home; "
                                      "the arm stopped)", "home", attempt)
                progress("verify", 0.95)
                ok = verify() if verify else None
                progress("home", 1.0)
                if ok is False:
                    return PickResult(False, "released, but the object is not in the destination box",
                                      "verify", attempt)
                # The arm did its part; an unchecked placement says so rather than pass for a verified one.
                unchecked = " (not verified: no fresh perception)" if verify and ok is None else ""
                return PickResult(True, f"placed in {destination}{unchecked}", "home", attempt)
            # Dropped or missed: look again from home (the arm out of the camera's view) and retry once.
            self._go_home(cancel)
            if cancel.is_set():
                return PickResult(False, f"cancelled after the object {outcome}; the arm stopped", attempts=attempt)
            found = locate(target) if locate and attempt == 1 else None
            if found is None:
                return PickResult(False, f"failed: the object {outcome} and could not be found for a retry"
                                  if attempt == 1 else f"failed: the object {outcome} again after one retry",
                                  attempts=attempt)
            target = found
            try:
                self.check_goal(target, destination)
            except KobaError as exc:
                return PickResult(False, f"failed: after a drop, {exc}", attempts=attempt)
        raise AssertionError("unreachable")

    def _run(self, traj: Planned, cancel: threading.Event) -> None:
        # The arm may not be exactly where the plan assumed (a finger stopped by the object or the floor):
        # join it to the plan's start with a short move rather than a jump the controller would rightly refuse.
        if cancel.is_set():  # cancelled between stages: nothing more is sent to the arm, not even 20 ms of it
            raise Cancelled()
        q = self.arm.joint_positions()
        if np.max(np.abs(q - traj.start)) > 0.01:   # the join is checked like every planned move
            traj = concat(self._checked(joint_move(q, traj.start, self.kin.max_velocity), q), traj)
        if not self.arm.execute(traj, cancel):
            raise Cancelled()

    def _grip(self, width: float, cancel: threading.Event) -> float:
        if cancel.is_set():
            raise Cancelled()
        width = self.arm.gripper(width, cancel)
        if cancel.is_set():
            raise Cancelled()
        return width

    def _attempt(self, target: Target, destination: str, progress, cancel, place_xy) -> str:
        """One try; returns 'placed', or what went wrong with the object ('slipped', 'was missed'). A cancel after
        the fingers have let go over the box raises Cancelled(after_release=True)."""
        plan = self.plan_pick(target, self.arm.joint_positions())
        place = self.plan_place(destination, target.size[2] or 0.04, plan["q_lift"], place_xy)
        progress("approach", 0.0)
        opening = grasp_opening(target, grasp_yaw(target))
        self._grip(opening, cancel)
        self._run(plan["approach"], cancel)
        progress("grasp", 0.2)
        self._run(plan["descend"], cancel)
        if self._grip(0.0, cancel) < HELD_MIN_WIDTH:
            self._grip(MAX_OPENING, cancel)
            self._run(plan["lift"], cancel)
            return "was missed"
        progress("lift", 0.4)
        self._run(plan["lift"], cancel)
        progress("transfer", 0.55)
        self._run(place["transfer"], cancel)
        holding = self._grip(0.0, cancel)
        if holding < HELD_MIN_WIDTH:
            return "slipped"
        progress("release", 0.75)
        self._run(place["lower"], cancel)
        if cancel.is_set():
            raise Cancelled()
        # Let go counts once the fingers have moved apart: a cancel at this moment may keep the opening from being
        # sent at all (the arm checks the flag too), and then the object is still held.
        released = self.arm.gripper(MAX_OPENING, cancel) > holding + RELEASE_GAP
        try:
            if cancel.is_set():
                raise Cancelled()
            self._run(place["retreat"], cancel)
        except Cancelled:
            raise Cancelled(after_release=released) from None
        return "placed"

    def _go_home(self, cancel: threading.Event) -> None:
        """Back to the tucked pose, lifting first if low; best effort (a failure here leaves the arm holding)."""
        try:
            self._move_home(cancel)
        except KobaError:
            pass

    def _move_home(self, cancel: threading.Event) -> None:
        q = self.arm.joint_positions()
        if not _near_home(q) and not cancel.is_set():
            tool = self.kin.fk(q)[0]
            up = None
            if tool[2] < CLEAR_Z - 0.01 and self.workspace.contains(tool):
                _, orientation = self.kin.fk(q)
                try:
                    up, q = line_move(self.kin, q, tool, (tool[0], tool[1], CLEAR_Z), orientation)
                except KobaError:
                    up = None
            home = joint_move(q, HOME, self.kin.max_velocity)
            if self.workspace.contains(self.kin.fk(q)[0]):   # checked as every move (a failure leaves the arm where it
                home = self._checked(home, q)                # is); from outside the workspace, home is the way back in
            else:
                validate(home, self.kin.limits, q)
            self.arm.execute(concat(up, home) if up is not None else home, cancel)


def _near_home(q) -> bool:
    return bool(np.max(np.abs(np.asarray(q) - HOME)) < 0.05)
