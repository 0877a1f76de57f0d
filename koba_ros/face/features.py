"""Expression features from FaceMesh landmarks: geometry that a smile or a frown changes.

All lengths are divided by the distance between the outer eye corners (IOD) and measured in a
face frame with the head's roll removed, so they do not depend on the face's size in the
image or on a tilted head. y grows downward (image convention). Pitch is not removed (the cues are image-plane
geometry): looking up or down moves the mouth corners' lift, so expression.classify does not read a frame whose
pitch is far from the calibrated rest face's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# FaceMesh landmark indices (mediapipe's canonical 468-point mesh). "right" is the subject's right.
EYE_OUTER_R, EYE_INNER_R, EYE_UPPER_R, EYE_LOWER_R = 33, 133, 159, 145
EYE_OUTER_L, EYE_INNER_L, EYE_UPPER_L, EYE_LOWER_L = 263, 362, 386, 374
MOUTH_CORNER_R, MOUTH_CORNER_L = 61, 291
LIP_INNER_UPPER, LIP_INNER_LOWER = 13, 14
BROW_R = (70, 63, 105, 66, 107)     # outer -> inner, upper edge of the right brow
BROW_L = (300, 293, 334, 296, 336)
BROW_INNER_R, BROW_INNER_L = 107, 336
FOREHEAD, CHIN = 10, 152
CHEEK_R, CHEEK_L = 234, 454


@dataclass(frozen=True)
class FaceFeatures:
    mouth_corner_lift: float   # lip centre minus mouth corners (y): > 0 corners raised (smile), < 0 lowered
    mouth_open: float          # gap between the inner lips
    mouth_width: float         # corner to corner
    brow_raise: float          # upper eyelids minus brows (y): drops when the brows are lowered (frown)
    brow_gap: float            # inner brow ends apart: drops when the brows are drawn together
    eye_aperture: float        # eyelid gap / eye width, both eyes averaged: drops when squinting
    yaw: float                 # head turn, radians (+: the subject's left cheek farther from the camera)
    pitch: float               # head tilt, radians (+: chin nearer the camera than the forehead, looking up)
    roll: float                # head tilt in the image plane, radians

    def as_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def face_frame(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Landmarks' x, y in the face frame (origin between the outer eye corners, roll removed, unit = IOD),
    with the IOD in pixels and the roll angle."""
    right, left = points[EYE_OUTER_R, :2], points[EYE_OUTER_L, :2]
    axis = left - right
    iod = float(np.hypot(*axis))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the eye corners coincide")
    # In the image the subject's left eye is on the right, so axis points along +x for an upright face.
    roll = float(np.arctan2(axis[1], axis[0]))
    c, s = np.cos(-roll), np.sin(-roll)
    rotation = np.array([[c, -s], [s, c]])
    return (points[:, :2] - (left + right) / 2) @ rotation.T / iod, iod, roll


def extract_features(points: np.ndarray) -> FaceFeatures:
    """FaceFeatures of one face's (468, 3) landmarks in pixels."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] != 3:
        raise ValueError(f"expected (468, 3) FaceMesh landmarks, got shape {points.shape}")
    q, iod, roll = face_frame(points)
    y = q[:, 1]

    def dist(a: int, b: int) -> float:
        return float(np.hypot(*(q[a] - q[b])))

    lip_centre = (y[LIP_INNER_UPPER] + y[LIP_INNER_LOWER]) / 2
    corners = (y[MOUTH_CORNER_R] + y[MOUTH_CORNER_L]) / 2
    brow_r = y[EYE_UPPER_R] - y[list(BROW_R)].mean()
    brow_l = y[EYE_UPPER_L] - y[list(BROW_L)].mean()
    eye_r = dist(EYE_UPPER_R, EYE_LOWER_R) / max(dist(EYE_OUTER_R, EYE_INNER_R), 1e-6)
    eye_l = dist(EYE_UPPER_L, EYE_LOWER_L) / max(dist(EYE_OUTER_L, EYE_INNER_L), 1e-6)
    # Head pose from mediapipe's relative depth: the far cheek / far end of the face is deeper (larger z).
    cheeks = points[CHEEK_L] - points[CHEEK_R]
    vertical = points[CHIN] - points[FOREHEAD]
    yaw = float(np.arctan2(cheeks[2], np.hypot(cheeks[0], cheeks[1])))
    pitch = float(np.arctan2(-vertical[2], np.hypot(vertical[0], vertical[1])))
    return FaceFeatures(
        mouth_corner_lift=float(lip_centre - corners),
        mouth_open=dist(LIP_INNER_UPPER, LIP_INNER_LOWER),
        mouth_width=dist(MOUTH_CORNER_R, MOUTH_CORNER_L),
        brow_raise=float((brow_r + brow_l) / 2),
        brow_gap=dist(BROW_INNER_R, BROW_INNER_L),
        eye_aperture=float((eye_r + eye_l) / 2),
        yaw=yaw, pitch=pitch, roll=roll,
    )
