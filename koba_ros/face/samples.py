"""Real face photos that ship with installed packages, and edits of real landmark sets.

- skimage.data.astronaut(): Eileen Collins, smiling (positive).
- matplotlib's sample_data/grace_hopper.jpg: Grace Hopper's portrait, mouth closed, at rest (neutral).
- skimage.data.coffee(): a cup of coffee, no face.
No registry package here ships a frowning face, so frowns (and a neutral version of the smiling
astronaut) are made by moving real FaceMesh landmarks: a smooth displacement field lowers the
mouth corners, narrows the mouth, and lowers and gathers the brows. Head nods and shakes turn
the real landmark set in 3-D.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.face.features import BROW_L, BROW_R, MOUTH_CORNER_L, MOUTH_CORNER_R, extract_features, face_frame


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


def no_face() -> np.ndarray:
    from skimage import data

    return data.coffee()


def on_canvas(rgb: np.ndarray, size: tuple[int, int] = (640, 480), x: int | None = None,
              y: int | None = None) -> np.ndarray:
    """The photo scaled to fit size (w, h) and placed on a grey canvas at (x, y) (default: centred);
    parts beyond the canvas are cut off, which is how a face ends up at the frame's edge."""
    import cv2

    w, h = size
    scale = min(w / rgb.shape[1], h / rgb.shape[0])
    img = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 128, np.uint8)
    x = (w - img.shape[1]) // 2 if x is None else x
    y = (h - img.shape[0]) // 2 if y is None else y
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + img.shape[1], w), min(y + img.shape[0], h)
    canvas[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


@dataclass(frozen=True)
class Edit:
    """Target changes in eye-corner-distance units, in the face frame (y down)."""
    corner_lift: float | None = None   # set the mouth-corner lift to this (None: leave)
    mouth_width: float | None = None   # set the mouth width to this
    brow_lower: float = 0.0            # move the brows down by this
    brow_gather: float = 0.0           # move each brow toward the midline by this


NEUTRAL = Edit(corner_lift=0.0, mouth_width=0.6)
FROWN = Edit(corner_lift=-0.05, mouth_width=0.56, brow_lower=0.04, brow_gather=0.03)
BROWS_ONLY_FROWN = Edit(brow_lower=0.04, brow_gather=0.04)  # a frown with the mouth left alone


def _field(xy: np.ndarray, anchors) -> np.ndarray:
    """Displacement at points xy (N, 2): Gaussian-weighted anchor displacements, normalised where they overlap."""
    total = np.zeros_like(xy, dtype=np.float64)
    weight = np.zeros(len(xy))
    for anchor, disp, sigma in anchors:
        w = np.exp(-np.sum((xy - anchor) ** 2, axis=1) / (2 * sigma**2))
        total += w[:, None] * disp
        weight += w
    return total / np.maximum(weight, 1.0)[:, None]


def edit_landmarks(points: np.ndarray, edit: Edit) -> np.ndarray:
    """The (468, 3) landmarks with the expression changed; the rest of the face moves smoothly along."""
    f = extract_features(points)
    _, iod, roll = face_frame(points)
    c, s = np.cos(roll), np.sin(roll)
    to_image = np.array([[c, -s], [s, c]]) * iod  # face-frame vector -> image pixels
    dy = 0.0 if edit.corner_lift is None else f.mouth_corner_lift - edit.corner_lift  # +: corners go down
    dx = 0.0 if edit.mouth_width is None else (f.mouth_width - edit.mouth_width) / 2
    anchors = []
    # Corners move toward the midline and down; the subject's right corner lies at -x in the face frame.
    for idx, inward in ((MOUTH_CORNER_R, 1.0), (MOUTH_CORNER_L, -1.0)):
        anchors.append((points[idx, :2], to_image @ np.array([inward * dx, dy]), 0.12 * iod))
    for brow, inward in ((BROW_R, 1.0), (BROW_L, -1.0)):
        for idx in brow:
            gather = edit.brow_gather * (1.0 if idx in (107, 336, 66, 296) else 0.4)  # inner ends move most
            anchors.append((points[idx, :2], to_image @ np.array([inward * gather, edit.brow_lower]), 0.07 * iod))
    moved = np.array(points, dtype=np.float64)
    moved[:, :2] += _field(moved[:, :2], anchors)
    return moved


def rotate_landmarks(points: np.ndarray, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """The landmarks turned in 3-D about their centroid (a head turn or nod), in the same pixel frame."""
    centre = points.mean(axis=0)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    turn = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])     # about the image's vertical axis
    tilt = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])     # about the image's horizontal axis
    return (points - centre) @ (tilt @ turn).T + centre
