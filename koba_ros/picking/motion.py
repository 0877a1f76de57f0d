"""Time-parameterised joint trajectories: minimum-jerk (quintic) joint moves and straight tool lines.

Durations come from each joint's velocity limit (scaled by `speed`), so a planned trajectory never asks a
joint to move faster than it may; positions come from IK inside the joint limits.
"""
from __future__ import annotations

import numpy as np

from koba_ros.picking.kinematics import ARM_JOINTS, PandaKinematics
from koba_ros.sim.trajectory import JointTrajectory

SPEED = 0.5          # fraction of each joint's velocity limit a move uses at its peak
MIN_DURATION = 0.4   # s
SAMPLES = 12         # waypoints per joint move
LINE_SPEED = 0.15    # m/s for straight tool moves (descend, lift)
LINE_STEP = 0.02     # m between IK waypoints on a straight move


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Quintic 10s^3 - 15s^4 + 6s^5: zero velocity and acceleration at both ends; peak velocity 1.875."""
    return s ** 3 * (10 - 15 * s + 6 * s ** 2)


def joint_move(q0, q1, max_velocity, speed: float = SPEED) -> JointTrajectory:
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    duration = max(MIN_DURATION, float(np.max(1.875 * np.abs(q1 - q0) / (speed * max_velocity))))
    s = np.linspace(0, 1, SAMPLES + 1)[1:]
    return JointTrajectory.make(ARM_JOINTS, s * duration, q0 + min_jerk(s)[:, None] * (q1 - q0))


def line_move(kin: PandaKinematics, q0, start, end, orientation) -> tuple[JointTrajectory, np.ndarray]:
    """Straight tool move start->end at constant orientation; returns the trajectory and the final joints."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    n = max(2, int(np.ceil(np.linalg.norm(end - start) / LINE_STEP)))
    q, points = np.asarray(q0, float), []
    for s in min_jerk(np.linspace(0, 1, n + 1)[1:]):
        q = kin.ik(start + s * (end - start), orientation, seed=q)
        points.append(q)
    points = np.array(points)
    # Time from distance along the line, and never faster than the joint limits allow.
    path = np.linspace(0, 1, n + 1)[1:] * np.linalg.norm(end - start) / LINE_SPEED * 1.875
    steps = np.abs(np.diff(np.vstack([q0, points]), axis=0))
    times, t = [], 0.0
    for k in range(n):
        natural = path[k] - (path[k - 1] if k else 0.0)
        t += max(natural, float(np.max(steps[k] / (SPEED * kin.max_velocity))), 0.02)
        times.append(t)
    return JointTrajectory.make(ARM_JOINTS, times, points), q


def concat(*trajs: JointTrajectory) -> JointTrajectory:
    times, points, offset = [], [], 0.0
    for traj in trajs:
        times.append(traj.times + offset)
        points.append(traj.positions)
        offset += traj.times[-1]
    return JointTrajectory.make(ARM_JOINTS, np.concatenate(times), np.vstack(points))
