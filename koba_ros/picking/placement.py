"""Where in the destination box to put an object down: the spot with the most room around it.

Dropping at the box centre lands the object on whatever is already there; a free spot keeps it on the floor.
Occupied places come from perception (centre and footprint radius of each object already in the box).
The picker puts down with the fingers closing along y (yaw 0) and opens them fully to let go, so along y the open
fingers, not the object, set how near a wall the spot may be.
"""
from __future__ import annotations

import numpy as np

from koba_ros.picking.picker import MAX_OPENING
from koba_ros.picking.workspace import FINGER_REACH
from koba_ros.sim.layout import BoxRegion, box_regions

WALL_CLEARANCE = 0.012   # m between the object (plus a finger) and a wall
# m from the spot to a wall along y. A fully open finger's outer face is up to FINGER_REACH[1] (its upper part: it
# slants out) beyond its inner face, and a flat object is let go with the fingers below the wall tops; plus 3 mm. With
# only the object's radius kept from the walls, a domino put down in a corner had a finger pressing on the wall top
# (57 N) while the pick was reported placed.
FINGER_WALL_CLEARANCE = MAX_OPENING / 2 + max(FINGER_REACH) + 0.003
GRID_STEP = 0.01


def _offsets(half: float) -> np.ndarray:
    return np.arange(-half, half + 1e-9, GRID_STEP) if half > 0 else np.zeros(1)


def free_spot(region: BoxRegion, occupied: list[tuple[float, float, float]], radius: float) -> tuple[float, float]:
    """(x, y) in base_link inside `region` farthest from the objects in `occupied` ((x, y, radius) each)."""
    # A box too small for the object (or the open fingers) anywhere leaves its centre, the least bad spot.
    half_x = max(region.inner / 2 - radius - WALL_CLEARANCE, 0.0)
    half_y = max(region.inner / 2 - max(radius + WALL_CLEARANCE, FINGER_WALL_CLEARANCE), 0.0)
    gx, gy = np.meshgrid(region.centre[0] + _offsets(half_x), region.centre[1] + _offsets(half_y))
    candidates = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if not occupied:
        return region.centre
    others = np.asarray(occupied, dtype=np.float64)
    gaps = np.linalg.norm(candidates[:, None] - others[None, :, :2], axis=2) - others[None, :, 2] - radius
    room = gaps.min(axis=1)
    # Most room first; among equally roomy spots prefer the one nearest the centre.
    centre_distance = np.linalg.norm(candidates - region.centre, axis=1)
    best = np.lexsort((centre_distance, -np.round(room, 3)))[0]
    return float(candidates[best, 0]), float(candidates[best, 1])


def place_among(destination: str, objects, size, skip_id: int | None = None) -> tuple[float, float] | None:
    """The roomiest spot in `destination` for an object of this size (x, y, z), given the perceived objects already
    there (PerceivedObjects; the one being moved, skip_id, aside). Both the in-process session and picker_node put
    objects down here, so an object never lands on, or against, what is already in the box. None for a destination
    that is no box (the picker rejects that goal with its own message)."""
    if destination not in box_regions():
        return None
    occupied = [(o.position[0], o.position[1], max(o.size[:2]) / 2) for o in objects
                if o.box == destination and o.id != skip_id]
    return free_spot(box_regions()[destination], occupied, max(0.0, max(size[:2]) / 2))   # a grid sized by |size|
