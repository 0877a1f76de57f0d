"""Where frames come from: an image file, a video file, a webcam (OpenCV), a sensor_msgs/Image.

Every failure is a KobaError with one line: a missing or corrupt file, a camera that is not
there, an image encoding we do not read.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from koba_ros.errors import KobaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise KobaError(f"{path} is a folder; give an image or a video file")
    if not path.is_file():
        raise KobaError(f"no such file: {path}")
    return path


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8."""
    import cv2

    path = _existing_file(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise KobaError(f"cannot read {path} as an image (corrupt or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video(path: str | Path, max_frames: int = 100_000) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s, RGB frame) for each frame of a video file."""
    import cv2

    path = _existing_file(path)
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if not capture.isOpened() or fps <= 0:
            raise KobaError(f"cannot read {path} as a video (corrupt or unknown format)")
        count = 0
        while count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            yield count / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            count += 1
        if count == 0:
            raise KobaError(f"{path} has no readable frames")
    finally:
        capture.release()


class Webcam:
    """A local camera through OpenCV; read() is None once the camera stops delivering."""

    def __init__(self, device: int | str = 0, width: int = 640, height: int = 480):
        import cv2

        self.device = device
        self.capture = cv2.VideoCapture(device)
        if not self.capture.isOpened():
            self.capture.release()
            raise KobaError(f"no camera at {device!r} (OpenCV could not open it)")
        self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray | None:
        import cv2

        ok, bgr = self.capture.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok and bgr is not None else None

    def close(self) -> None:
        self.capture.release()


# sensor_msgs/Image encodings -> (channels, how to get RGB)
ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_msg_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """A sensor_msgs/Image's fields as an RGB uint8 array (no cv_bridge needed)."""
    if encoding not in ENCODINGS:
        raise KobaError(f"image encoding {encoding!r} not supported; use one of {', '.join(ENCODINGS)}")
    channels = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise KobaError(f"empty image ({width}x{height})")
    if step < width * channels or len(data) < step * height:
        raise KobaError(f"image data too short: {len(data)} bytes for {width}x{height} {encoding}, step {step}")
    rows = np.frombuffer(bytes(data), np.uint8, count=step * height).reshape(height, step)
    img = rows[:, :width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    if encoding.startswith("bgr"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def rgb_to_image_fields(rgb: np.ndarray) -> dict:
    """Fields for a sensor_msgs/Image (rgb8) holding this frame."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return {"encoding": "rgb8", "height": h, "width": w, "step": w * 3, "is_bigendian": 0, "data": rgb.tobytes()}


def is_image_path(path: str | Path) -> bool:
    """By its suffix; a file without one is an image when OpenCV recognises an image signature in it."""
    path = Path(path)
    if path.suffix:
        return path.suffix.lower() in IMAGE_SUFFIXES
    import cv2

    return path.is_file() and cv2.haveImageReader(str(path))
