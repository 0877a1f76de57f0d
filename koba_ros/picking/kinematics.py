"""Panda kinematics for planning: IK and FK on a kinematic-only copy of the URDF in its own PyBullet client.

Nothing here steps physics or touches the simulated cell, so the same planner drives the PyBullet arm or a
real Panda's controller.
"""
from __future__ import annotations

import math

import numpy as np
import pybullet_data

from koba_ros.errors import KobaError
from koba_ros.sim.bullet import pb
from koba_ros.sim.trajectory import JointLimit

PANDA_URDF = "franka_panda/panda.urdf"
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
TOOL_LINK = "panda_grasptarget"
# Where IK's null space pulls: elbow up, wrist above the hand, like the Panda's ready pose.
REST = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785)
IK_TOLERANCE = 0.004   # m; a solution further than this from the target is no solution
# The null space pull (REST) leaves the tool ~2 mm off the target (a jog landed 2.1 mm forward, 0.5 mm up of it, and
# the error added up over jogs); a few steps without the pull from there take it under this (session 30).
REFINED_TOLERANCE = 0.0001   # m
REFINE_STEPS = 5
# How far from 1 an orientation's norm may be. One further off is refused, not normalised: PyBullet's IK never returns
# from a zero quaternion (holding the GIL), and a non-unit one passed the acceptance test below whatever the tool did
# (|dot| >= 0.995 with a 3-long quaternion). Every producer here (top_down, fk, PyBullet) is unit to ~1e-7, so a
# quaternion this far off is a caller's mistake (an Euler triple, zeros never filled in) whose normalised rotation
# nobody meant (session 30).
UNIT_TOLERANCE = 1e-3


def top_down(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion (xyzw) of the tool pointing straight down, fingers closing along (sin yaw, -cos yaw)."""
    return tuple(pb.getQuaternionFromEuler((math.pi, 0.0, yaw)))


class PandaKinematics:
    def __init__(self):
        self.client = pb.connect(pb.DIRECT)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        self.robot = pb.loadURDF(PANDA_URDF, useFixedBase=True, physicsClientId=self.client)
        index, self.limits, self.movable = {}, {}, []
        for j in range(pb.getNumJoints(self.robot, physicsClientId=self.client)):
            info = pb.getJointInfo(self.robot, j, physicsClientId=self.client)
            index[info[1].decode()] = j
            if info[2] != pb.JOINT_FIXED:
                self.movable.append(j)
            if info[12].decode() == TOOL_LINK:
                self.tool = j
            if info[1].decode() in ARM_JOINTS:
                self.limits[info[1].decode()] = JointLimit(info[8], info[9], info[11])
        self.arm = [index[n] for n in ARM_JOINTS]
        self.lower = np.array([self.limits[n].lower for n in ARM_JOINTS])
        self.upper = np.array([self.limits[n].upper for n in ARM_JOINTS])
        self.max_velocity = np.array([self.limits[n].velocity for n in ARM_JOINTS])

    def _set(self, q) -> None:
        for j, v in zip(self.arm, q, strict=True):
            pb.resetJointState(self.robot, j, float(v), physicsClientId=self.client)

    def fk(self, q) -> tuple[np.ndarray, np.ndarray]:
        """Tool position and quaternion (xyzw) in base_link for arm joints q."""
        self._set(q)
        state = pb.getLinkState(self.robot, self.tool, computeForwardKinematics=True, physicsClientId=self.client)
        return np.array(state[4]), np.array(state[5])

    def ik(self, position, orientation, seed=None) -> np.ndarray:
        """Arm joints putting the tool at position/orientation, inside the joint limits (KobaError if none).

        Tries the given seed, then the rest pose turned toward the target (IK is local: the seed matters).
        A non-finite position, orientation or seed is refused first: PyBullet's IK never returns from a NaN
        quaternion, and it holds the GIL while it spins, so every thread of the process (a "stop" included) would
        stop with it. So are a quaternion off unit length (UNIT_TOLERANCE) and a vector of the wrong length.
        """
        seed_numbers = np.ravel(seed) if seed is not None else np.zeros(len(ARM_JOINTS))
        numbers = [*np.ravel(position), *np.ravel(orientation), *seed_numbers]
        if (len(np.ravel(position)) != 3 or len(np.ravel(orientation)) != 4 or len(seed_numbers) != len(ARM_JOINTS)
                or not np.all(np.isfinite(numbers))):
            raise KobaError(f"IK needs a finite position (3), orientation (4) and seed ({len(ARM_JOINTS)} joints), got "
                            f"{position!r:.80}, {orientation!r:.80}, seed of {len(seed_numbers)}")
        norm = math.hypot(*np.ravel(orientation))   # hypot: no overflow to inf for 1e300
        if not abs(norm - 1.0) <= UNIT_TOLERANCE:
            raise KobaError(f"IK needs a unit quaternion (xyzw), got {orientation!r:.80} (norm {norm:.3g})")
        facing = np.array(REST)
        facing[0] = math.atan2(position[1], position[0])
        seeds = ([seed_numbers.astype(np.float64)] if seed is not None else []) + [facing]
        best = None
        for start in seeds:
            try:
                return self._ik_from(position, orientation, start)
            except KobaError as exc:
                best = best or exc
        raise best

    def _ik_from(self, position, orientation, seed: np.ndarray) -> np.ndarray:
        q = seed.copy()
        ranges = list(self.upper - self.lower) + [0.04, 0.04]
        for _ in range(20):   # PyBullet's IK is one damped step per call from the current state: iterate
            self._set(q)
            full = pb.calculateInverseKinematics(
                self.robot, self.tool, position, orientation, lowerLimits=[*self.lower, 0, 0],
                upperLimits=[*self.upper, 0.04, 0.04], jointRanges=ranges, restPoses=[*REST, 0.02, 0.02],
                maxNumIterations=100, residualThreshold=1e-5, physicsClientId=self.client)
            q = np.clip(np.array(full[:7]), self.lower, self.upper)
            reached, quat = self.fk(q)
            if np.linalg.norm(reached - position) < IK_TOLERANCE * 0.25 and abs(np.dot(quat, orientation)) > 0.999:
                break
        q = self._refined(q, position, orientation)
        reached, quat = self.fk(q)
        error = np.linalg.norm(reached - np.asarray(position))
        if not error <= IK_TOLERANCE or not abs(np.dot(quat, orientation)) >= 0.995:  # NaN fails, not passes
            raise KobaError(f"cannot reach ({position[0]:.3g}, {position[1]:.3g}, {position[2]:.3g}) pointing down "
                            f"(best {error * 100:.3g} cm off)")   # .3g: 1e300 is 1e+300, not 301 digits
        return q

    def _refined(self, q: np.ndarray, position, orientation) -> np.ndarray:
        """`q` moved onto the target by plain damped least squares (no null space) from where the null-space
        solution left it: the same branch, a small step. `q` itself when a step leaves the joint limits or gets no
        closer."""
        def error(joints):
            reached, quat = self.fk(joints)
            return float(np.linalg.norm(reached - np.asarray(position))), abs(float(np.dot(quat, orientation)))

        best, (best_error, best_dot) = q, error(q)
        for _ in range(REFINE_STEPS):
            if best_error < REFINED_TOLERANCE:
                break
            self._set(best)
            full = pb.calculateInverseKinematics(self.robot, self.tool, position, orientation, maxNumIterations=100,
                                                 residualThreshold=1e-6, physicsClientId=self.client)
            step = np.array(full[:7])
            if not np.all((step >= self.lower) & (step <= self.upper)):
                break   # clipping it would undo the step: keep the null-space solution (within the limits)
            step_error, step_dot = error(step)
            if not (step_error < best_error and step_dot >= min(best_dot, 0.999)):
                break
            best, best_error, best_dot = step, step_error, step_dot
        return best

    def close(self) -> None:
        if pb.isConnected(self.client):
            pb.disconnect(self.client)
