"""Face landmarks with mediapipe 0.10.21 FaceMesh (468 points; its TFLite models ship inside the wheel).

A frame goes in as an RGB uint8 array (H, W, 3); faces come out as landmark arrays in pixels,
largest first. Nothing is downloaded: FaceMesh loads face_detection_short_range.tflite and
face_landmark.tflite from mediapipe/modules/ of the installed wheel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError

MIN_SIDE = 32  # FaceMesh's detector works on 128x128 crops; smaller frames cannot hold a usable face


@dataclass
class Face:
    points: np.ndarray          # (468, 3) x, y in pixels, z in pixels (mediapipe's depth, scaled like x)
    frame_size: tuple[int, int]  # (width, height)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """x, y, width, height in pixels of the landmarks' bounding box (may reach outside the frame)."""
        x0, y0 = self.points[:, :2].min(axis=0)
        x1, y1 = self.points[:, :2].max(axis=0)
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)

    @property
    def area(self) -> float:
        _, _, w, h = self.bbox
        return w * h

    @property
    def visible_fraction(self) -> float:
        """Share of landmarks inside the frame: low for a face cut by the frame's edge."""
        w, h = self.frame_size
        x, y = self.points[:, 0], self.points[:, 1]
        return float(np.mean((x >= 0) & (x < w) & (y >= 0) & (y < h)))


def check_frame(frame) -> np.ndarray:
    """The frame as a contiguous RGB uint8 array, or a KobaError saying what is wrong with it.

    uint8 is taken as is; uint16 (16-bit PNG/TIFF, rgb16 cameras) is full range 0..65535 and is scaled down (>> 8),
    not clipped (clipping made every normal pixel white); floats with a maximum <= 1 are read as 0..1, other numbers
    as 0..255 and clipped. Text, objects, complex numbers and ragged nested lists are refused."""
    if frame is None:
        raise KobaError("empty frame (None)")
    try:
        frame = np.asarray(frame)
    except (ValueError, TypeError):  # ragged nested lists; numpy's own message is a paragraph on shapes
        raise KobaError("frame is not an image array (nested rows of unequal length?)") from None
    if frame.dtype.kind not in "biuf":
        raise KobaError(f"frame must hold real numbers (an image array), got dtype {frame.dtype}")
    if frame.size == 0:
        raise KobaError(f"empty frame (shape {frame.shape})")
    if frame.ndim == 2:
        frame = np.stack([frame] * 3, axis=-1)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise KobaError(f"expected an RGB image (H, W, 3), got shape {frame.shape}")
    if min(frame.shape[:2]) < MIN_SIDE:
        raise KobaError(f"frame {frame.shape[1]}x{frame.shape[0]} is too small for face detection "
                        f"(at least {MIN_SIDE} px a side)")
    if frame.dtype.kind == "u" and frame.dtype.itemsize == 2:   # either byte order (a big-endian TIFF: >u2)
        frame = (frame.astype(np.uint16) >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and np.nanmax(frame) <= 1.0:
            frame = np.nan_to_num(frame) * 255.0
        frame = np.clip(np.nan_to_num(frame), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame[:, :, :3])


class LandmarkDetector:
    """FaceMesh over frames. video=True tracks landmarks from frame to frame (faster, steadier),
    video=False runs the detector on every frame (stills)."""

    def __init__(self, max_faces: int = 4, video: bool = True, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        if not 1 <= int(max_faces) <= 16:
            raise KobaError(f"max_faces must be 1..16, got {max_faces}")
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= float(value) <= 1.0:
                raise KobaError(f"{name} must be in 0..1, got {value}")
        try:
            from mediapipe.python.solutions.face_mesh import FaceMesh
        except ImportError as exc:
            raise KobaError(f"mediapipe is not installed ({exc}); pip install mediapipe==0.10.21") from None
        self._mesh = FaceMesh(static_image_mode=not video, max_num_faces=int(max_faces), refine_landmarks=False,
                              min_detection_confidence=float(min_detection_confidence),
                              min_tracking_confidence=float(min_tracking_confidence))

    def detect(self, frame) -> list[Face]:
        """Faces in an RGB frame, largest first."""
        rgb = check_frame(frame)
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = []
        for landmarks in result.multi_face_landmarks or ():
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in landmarks.landmark], dtype=np.float64)
            faces.append(Face(pts, (w, h)))
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def close(self) -> None:
        self._mesh.close()
