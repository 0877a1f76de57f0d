"""The region the tool may visit: above the table, around the boxes, clear of the robot's own base; and where the
open gripper meets the table and the boxes (the picker's grasp room, teleop's check of a straight move)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from koba_ros.sim.layout import BOX_FLOOR_THICKNESS, BOX_WALL, BOX_WALL_HEIGHT, box_regions

# The gripper from above, from the grasp target point (the "tool"), on pybullet_data's Panda (ray casts, session 30).
# The fingers close along (sin yaw, -cos yaw); their inner faces are the opening apart.
FINGERTIP_BELOW_TOOL = 0.009  # m from the grasp target point down to the fingertips' lowest point
FINGER_THICKNESS = 0.012      # m a fingertip needs beside the object (the picker's grasp room)
FINGER_REACH = (0.018, 0.027)  # m an open finger reaches beyond its inner face below the tool point, and above it
FINGER_HALF_ACROSS = 0.013    # m, a finger's half width across the closing axis
HAND_ABOVE_TOOL = 0.038       # m from the grasp target point up to the hand's underside
HAND_HALF_LENGTH = 0.101      # m along the closing axis
HAND_HALF_ACROSS = 0.021      # m (the underside; the hand is higher beyond)
CLEARANCE = 0.002             # m a straight move keeps from the table, a box floor or wall
PATH_STEP = 0.002             # m between the tool positions a straight move is checked at


@dataclass(frozen=True)
class Workspace:
    x: tuple[float, float] = (0.15, 0.75)   # the low bound leaves room for the tucked home pose
    y: tuple[float, float] = (-0.30, 0.30)
    z: tuple[float, float] = (0.005, 0.50)
    reach: float = 0.82   # max distance from the shoulder (0, 0, 0.333) the Panda reaches pointing down

    def contains(self, p) -> bool:
        x, y, z = (float(v) for v in p)
        inside = self.x[0] <= x <= self.x[1] and self.y[0] <= y <= self.y[1] and self.z[0] <= z <= self.z[1]
        return inside and float(np.linalg.norm(np.subtract(p, (0, 0, 0.333)))) <= self.reach

    def why_not(self, p) -> str:
        return (f"({p[0]:.3g}, {p[1]:.3g}, {p[2]:.3g}) m is outside the workspace x {self.x}, y {self.y}, "
                f"z {self.z}")   # .3g: 1e308 is 1e+308, not 309 digits


def footprint(x: float, y: float, yaw: float, along: tuple[float, float], half_across: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle from `along[0]` to `along[1]` on the closing axis (sin yaw, -cos yaw) from
    (x, y), `half_across` to either side of it."""
    closing, across = np.array([math.sin(yaw), -math.cos(yaw)]), np.array([math.cos(yaw), math.sin(yaw)])
    return np.array([(x, y) + a * closing + b * across for a in along for b in (-half_across, half_across)])


def finger_footprints(x: float, y: float, yaw: float, width: float, reach: float = FINGER_THICKNESS,
                      half_across: float = 0.0) -> list[np.ndarray]:
    """Corners of each of the two fingers opened `width` apart over (x, y), reaching `reach` beyond their inner
    faces (the picker's grasp room takes a fingertip's thickness and no width across)."""
    return [footprint(x, y, yaw, (k * width / 2, k * (width / 2 + reach)), half_across) for k in (1, -1)]


def finger_room(x: float, y: float, yaw: float, width: float) -> float:
    """Clearance from the box walls of two fingertips opened `width` apart over (x, y), closing along
    (sin yaw, -cos yaw): negative over or past a wall; 0 where (x, y) is not inside a box."""
    region = next((r for r in box_regions().values() if r.contains(x, y)), None)
    if region is None:
        return 0.0
    corners = np.vstack(finger_footprints(x, y, yaw, width))
    return float(np.min(region.inner / 2 - np.abs(corners - region.centre)))


def yaw_of(orientation) -> float:
    """The yaw of a tool quaternion (xyzw) pointing down: its fingers close along (sin yaw, -cos yaw), its y axis."""
    qx, qy, qz, qw = (float(v) for v in orientation)
    return math.atan2(2 * (qx * qy - qw * qz), -(1 - 2 * (qx * qx + qz * qz)))


@lru_cache(maxsize=1)
def _static_parts() -> tuple[np.ndarray, np.ndarray]:
    """The boxes' floors and walls as (lo x, lo y, hi x, hi y) footprints widened by CLEARANCE, and their top
    heights (the table is z 0)."""
    rects, tops = [], []
    wall_top = BOX_FLOOR_THICKNESS + BOX_WALL_HEIGHT
    for region in box_regions().values():
        (cx, cy), half = region.centre, region.inner / 2
        outer = half + BOX_WALL
        rects.append((cx - outer, cy - outer, cx + outer, cy + outer))
        tops.append(BOX_FLOOR_THICKNESS)
        for lo_x, lo_y, hi_x, hi_y in ((half, -outer, outer, outer), (-outer, -outer, -half, outer),
                                       (-outer, half, outer, outer), (-outer, -outer, outer, -half)):
            rects.append((cx + lo_x, cy + lo_y, cx + hi_x, cy + hi_y))
            tops.append(wall_top)
    return np.array(rects) + (-CLEARANCE, -CLEARANCE, CLEARANCE, CLEARANCE), np.array(tops)


def _overlapping(corners: np.ndarray, rects: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Which axis-aligned `rects` a convex polygon (`corners`, edges along `axes`) overlaps (separating axes)."""
    rect_corners = np.stack([rects[:, [0, 1]], rects[:, [2, 1]], rects[:, [2, 3]], rects[:, [0, 3]]], axis=1)
    overlap = (corners[:, 0].max() >= rects[:, 0]) & (corners[:, 0].min() <= rects[:, 2])
    overlap &= (corners[:, 1].max() >= rects[:, 1]) & (corners[:, 1].min() <= rects[:, 3])
    for axis in axes:
        mine, theirs = corners @ axis, rect_corners @ axis
        overlap &= (mine.max() >= theirs.min(axis=1)) & (mine.min() <= theirs.max(axis=1))
    return overlap


def gripper_hit(position, yaw: float, width: float) -> str | None:
    """What the gripper pointing down at `position` (fingers opened `width` apart) touches, within CLEARANCE:
    "table", "box" or None."""
    x, y, z = (float(v) for v in position)
    tip, hand = z - FINGERTIP_BELOW_TOOL, z + HAND_ABOVE_TOOL
    if tip < CLEARANCE:
        return "table"
    rects, tops = _static_parts()
    if tip >= tops.max() + CLEARANCE:   # above every wall (the hand is higher still)
        return None
    axes = np.array([[math.sin(yaw), -math.cos(yaw)], [math.cos(yaw), math.sin(yaw)]])
    # (bottom, footprint): the fingers slant out, so their tips reach less far than their upper parts
    parts = [(bottom, corners) for bottom, reach in zip((tip, z), FINGER_REACH, strict=True)
             for corners in finger_footprints(x, y, yaw, width, reach, FINGER_HALF_ACROSS)]
    parts.append((hand, footprint(x, y, yaw, (-HAND_HALF_LENGTH, HAND_HALF_LENGTH), HAND_HALF_ACROSS)))
    for bottom, corners in parts:
        below = tops + CLEARANCE > bottom
        if np.any(below) and np.any(_overlapping(corners, rects[below], axes)):
            return "box"
    return None


def line_hit(start, end, yaw: float, width: float, start_width: float | None = None) -> str | None:
    """What a straight tool move from `start` to `end`, pointing down, fingers `width` apart on the way, would push
    the gripper into: the first thing touched that the start did not already touch ("table", "box"), or None. The
    start's own touch is excused, while it lasts, only where it is real with the fingers `start_width` apart (their
    width now; default `width`): a touch only the wider path width makes is no excuse to push on through a wall. A
    move may leave a touch (the fingers over a wall moved clear of it) and may go up through one (everything here
    stands on the table: a move straight up is never refused), but not end in one otherwise."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    n = max(1, int(np.ceil(np.linalg.norm(end - start) / PATH_STEP)))
    straight_up = end[2] > start[2] and np.allclose(end[:2], start[:2])
    # the start's own touch, while it lasts
    touching = straight_up or gripper_hit(start, yaw, width if start_width is None else start_width) is not None
    for s in np.linspace(0.0, 1.0, n + 1):
        hit = gripper_hit(start + s * (end - start), yaw, width)
        if hit is None:
            touching = False
        elif not touching or (s == 1.0 and not end[2] > start[2]):
            return hit   # touched after being clear, or still touching at the end of a move that is not up
    return None
