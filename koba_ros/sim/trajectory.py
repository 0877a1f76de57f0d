"""Joint trajectories as a JointTrajectoryController takes them: validation and time-based sampling.

A trajectory is a list of waypoints (positions per joint, time from start). The follower interpolates
linearly in time between waypoints (the producer does the smooth time-parameterisation) and holds the last
point at the end. Any waypoint outside a joint's limits, or a segment faster than its velocity limit, rejects
the whole trajectory before the arm moves: limits are enforced, not clipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError

VELOCITY_TOLERANCE = 1.05   # a producer's rounding may overshoot a limit by a hair
# s, the longest trajectory taken. The planners' longest move is ~13 s (a joint's whole range at half its speed limit);
# one of 1e300 s was followed as a move that never ends, and one over 10 minutes is a mistake of units (milliseconds
# or nanoseconds sent as seconds), not a move.
MAX_DURATION = 600.0


@dataclass(frozen=True)
class JointLimit:
    lower: float
    upper: float
    velocity: float


@dataclass(frozen=True)
class JointTrajectory:
    joint_names: tuple[str, ...]
    times: np.ndarray       # (N,) seconds from start, strictly increasing
    positions: np.ndarray   # (N, J)

    @staticmethod
    def make(joint_names, times, positions) -> JointTrajectory:
        return JointTrajectory(tuple(joint_names), np.asarray(times, dtype=np.float64),
                               np.asarray(positions, dtype=np.float64).reshape(len(times), len(joint_names)))


def validate(traj: JointTrajectory, limits: dict[str, JointLimit], start: np.ndarray) -> None:
    """Raise KobaError unless `traj` (starting from joint positions `start`) respects every limit."""
    unknown = [n for n in traj.joint_names if n not in limits]
    if unknown:
        raise KobaError(f"trajectory names unknown joint {unknown[0]!r}")
    if len(set(traj.joint_names)) != len(traj.joint_names):
        raise KobaError("trajectory names a joint twice")
    if len(traj.times) == 0:
        raise KobaError("trajectory has no points")
    if not (np.all(np.isfinite(traj.times)) and np.all(np.isfinite(traj.positions))):
        raise KobaError("trajectory has NaN or infinite values")
    # A NaN start passed every speed check below (no comparison with NaN is true): a 25 rad/s jump went through.
    start = np.asarray(start, dtype=np.float64)
    if start.shape != (len(traj.joint_names),) or not np.all(np.isfinite(start)):
        raise KobaError(f"trajectory start must be {len(traj.joint_names)} finite joint positions, got "
                        f"{start.tolist()}")
    if traj.times[0] < 0 or np.any(np.diff(traj.times) <= 0):
        raise KobaError("trajectory times must start at >= 0 and strictly increase")
    if traj.times[-1] > MAX_DURATION:
        raise KobaError(f"trajectory lasts {traj.times[-1]:.3g} s, over {MAX_DURATION:.0f} s")
    lower = np.array([limits[n].lower for n in traj.joint_names])
    upper = np.array([limits[n].upper for n in traj.joint_names])
    vmax = np.array([limits[n].velocity for n in traj.joint_names])
    outside = (traj.positions < lower - 1e-6) | (traj.positions > upper + 1e-6)
    if outside.any():
        point, joint = np.argwhere(outside)[0]
        raise KobaError(f"trajectory point {point} puts {traj.joint_names[joint]} at "
                        f"{traj.positions[point, joint]:.3f} rad, outside [{lower[joint]:.3f}, {upper[joint]:.3f}]")
    times = np.concatenate([[0.0], traj.times])
    positions = np.vstack([start, traj.positions])
    dt = np.diff(times)
    moves = np.abs(np.diff(positions, axis=0))
    if dt[0] == 0:   # a first point at t=0 must be where the arm already is
        if np.any(moves[0] > 1e-3):
            raise KobaError("trajectory's first point at time 0 is away from the arm's current position")
        dt, moves = dt[1:], moves[1:]
    if len(dt):
        speed = moves / dt[:, None]
        too_fast = speed > vmax * VELOCITY_TOLERANCE
        if too_fast.any():
            seg, joint = np.argwhere(too_fast)[0]
            raise KobaError(f"trajectory moves {traj.joint_names[joint]} at {speed[seg, joint]:.2f} rad/s, over its "
                            f"limit {vmax[joint]:.2f} rad/s")


class TrajectoryFollower:
    """Where the joints should be at time t while following one trajectory (holding when idle)."""

    def __init__(self, joint_names: tuple[str, ...], hold: np.ndarray):
        self.joint_names = tuple(joint_names)
        self.times = np.array([0.0])
        self.points = np.asarray(hold, dtype=np.float64)[None]
        self.t0 = 0.0

    def start(self, traj: JointTrajectory, now: float, current: np.ndarray) -> None:
        """Follow `traj` from `current` (all joints, in self.joint_names order); joints it omits hold still."""
        index = [self.joint_names.index(n) for n in traj.joint_names]
        points = np.repeat(np.asarray(current, dtype=np.float64)[None], len(traj.times), axis=0)
        points[:, index] = traj.positions
        if traj.times[0] > 0:
            self.times = np.concatenate([[0.0], traj.times])
            self.points = np.vstack([current, points])
        else:
            self.times, self.points = traj.times.copy(), points
        self.t0 = now

    def hold(self, now: float, current: np.ndarray) -> None:
        self.times, self.points, self.t0 = np.array([0.0]), np.asarray(current, dtype=np.float64)[None], now

    def target(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) to command at time `now`."""
        t = now - self.t0
        if t >= self.times[-1] or len(self.times) == 1:
            return self.points[-1], np.zeros(len(self.joint_names))
        k = int(np.searchsorted(self.times, t, side="right")) - 1
        k = max(k, 0)
        span = self.times[k + 1] - self.times[k]
        a = (t - self.times[k]) / span
        velocity = (self.points[k + 1] - self.points[k]) / span
        return self.points[k] + a * (self.points[k + 1] - self.points[k]), velocity

    def done(self, now: float) -> bool:
        return now - self.t0 >= self.times[-1]
