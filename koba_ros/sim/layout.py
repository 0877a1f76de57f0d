"""Geometry of the picking cell: table, the four boxes, the overhead camera, all in base_link.

base_link is the Panda's base on the table top (REP-103: x forward, away from the robot; y left; z up).
The overhead camera looks straight down with image up = +x (the far side of the table) and image
right = -y, so the boxes read top_left/top_right/bottom_left/bottom_right in the image as named here.
Perception takes the box regions from here by default; a real cell passes its own measured layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOXES = ("top_left", "top_right", "bottom_left", "bottom_right")

BOX_INNER = 0.21          # inside width of each (square) box, metres; >= 18 cm so several objects fit
BOX_WALL = 0.01           # wall thickness
BOX_WALL_HEIGHT = 0.05    # above the box floor; low so the camera sees into the corners
BOX_FLOOR_THICKNESS = 0.01
BOX_GAP = 0.01            # between neighbouring boxes' outer walls
GRID_CENTRE = (0.485, 0.0)  # centre of the 2x2 grid; keeps every box corner inside the Panda's top-down reach


@dataclass(frozen=True)
class BoxRegion:
    name: str
    centre: tuple[float, float]     # x, y in base_link
    inner: float                    # inside width
    floor_z: float                  # top of the box floor

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        half = self.inner / 2 - margin
        return abs(x - self.centre[0]) <= half and abs(y - self.centre[1]) <= half

    def offset_to_xy(self, dx_right: float, dy_down: float) -> tuple[float, float]:
        """A scene file's offset (x toward image right, y toward image bottom) as base_link x, y."""
        return self.centre[0] - dy_down, self.centre[1] - dx_right

    def xy_to_offset(self, x: float, y: float) -> tuple[float, float]:
        return self.centre[1] - y, self.centre[0] - x


def box_regions() -> dict[str, BoxRegion]:
    pitch = BOX_INNER + 2 * BOX_WALL + BOX_GAP
    cx, cy = GRID_CENTRE
    # top = far (+x), left = robot's left (+y) which is image left for a camera looking down with up = +x.
    rows = {"top": cx + pitch / 2, "bottom": cx - pitch / 2}
    cols = {"left": cy + pitch / 2, "right": cy - pitch / 2}
    return {name: BoxRegion(name, (rows[name.split("_")[0]], cols[name.split("_")[1]]), BOX_INNER,
                            BOX_FLOOR_THICKNESS)
            for name in BOXES}


def box_at(x: float, y: float, margin: float = 0.0) -> str | None:
    """Name of the box whose inside contains (x, y), or None."""
    for region in box_regions().values():
        if region.contains(x, y, margin):
            return region.name
    return None


# --- the overhead camera ------------------------------------------------------------------------

CAMERA_WIDTH = 640
CAMERA_HEIGHT = 480
CAMERA_VFOV_DEG = 45.0
CAMERA_HEIGHT_ABOVE_TABLE = 0.80
CAMERA_NEAR, CAMERA_FAR = 0.1, 2.0


def camera_intrinsics(width: int = CAMERA_WIDTH, height: int = CAMERA_HEIGHT,
                      vfov_deg: float = CAMERA_VFOV_DEG) -> np.ndarray:
    """Pinhole K (square pixels, principal point at the image centre)."""
    f = (height / 2) / np.tan(np.radians(vfov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def camera_pose() -> np.ndarray:
    """4x4 pose of the camera optical frame (z forward, x right, y down) in base_link.

    Looking straight down: optical z = -z_base; image right (optical x) = -y_base; image down (optical y) = -x_base.
    """
    pose = np.eye(4)
    # columns are the optical axes expressed in base_link: x_opt = -y_base, y_opt = -x_base, z_opt = -z_base
    pose[:3, 0] = (0, -1, 0)
    pose[:3, 1] = (-1, 0, 0)
    pose[:3, 2] = (0, 0, -1)
    pose[:3, 3] = (GRID_CENTRE[0], GRID_CENTRE[1], CAMERA_HEIGHT_ABOVE_TABLE)
    return pose
