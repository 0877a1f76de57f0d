"""Object crops: the small fixed-size picture of one object that a CNN reads (grounding's crop encoder).

Hatori et al. (ICRA 2018) describe each detected object by CNN features of its image crop. Ours is a square window
around the object's bbox resized to SIDE x SIDE, with CHANNELS uint8 planes:

    0-2  RGB
    3    the object's own mask (255 inside): which object of the window is meant, when neighbours share it
    4    height above the window's floor from depth, 1 unit = 0.4 mm: the shape seen from above. Height rather than
         raw depth because the camera distance differs across the cell and the object's shape does not.

Only the RGB, the depth and the mask are read, so a real RGB-D camera gets the same crops as the simulator.
"""
from __future__ import annotations

import cv2
import numpy as np

SIDE = 48          # px of the square crop
CHANNELS = 5       # R, G, B, mask, height
HEIGHT_UNIT = 0.0004   # m per height level (255 levels: 10 cm)
PAD = 4            # px around the bbox's longer edge


def square_crop(image: np.ndarray, bbox: tuple[int, int, int, int], pad: int = PAD) -> np.ndarray:
    """A square window around the bbox (side = its longer edge + 2 pad), zero outside the image, resized to SIDE."""
    x, y, w, h = bbox
    side = max(w, h) + 2 * pad
    x0, y0 = x + w // 2 - side // 2, y + h // 2 - side // 2
    out = np.zeros((side, side, *image.shape[2:]), image.dtype)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(image.shape[1], x0 + side), min(image.shape[0], y0 + side)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(out, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def object_crop(rgb: np.ndarray, depth: np.ndarray, bbox: tuple[int, int, int, int], mask: np.ndarray) -> np.ndarray:
    """(CHANNELS, SIDE, SIDE) uint8 for one object; `mask` is its HxW bool mask in the full image. Depth in metres;
    missing readings (NaN, 0, as a RealSense gives) count as the window's floor."""
    out = np.zeros((CHANNELS, SIDE, SIDE), np.uint8)
    out[:3] = square_crop(rgb, bbox).transpose(2, 0, 1)
    out[3] = square_crop(mask.astype(np.uint8) * 255, bbox)
    d = square_crop(depth.astype(np.float32), bbox)
    valid = np.isfinite(d) & (d > 0)
    if valid.any():
        floor = d[valid].max()
        out[4] = np.clip(np.where(valid, floor - d, 0.0) / HEIGHT_UNIT, 0, 255).astype(np.uint8)
    return out


def object_crops(rgb: np.ndarray, depth: np.ndarray, objects) -> np.ndarray:
    """(N, CHANNELS, SIDE, SIDE) uint8 for objects with a bbox and a full-image mask."""
    out = np.zeros((len(objects), CHANNELS, SIDE, SIDE), np.uint8)
    for k, o in enumerate(objects):
        out[k] = object_crop(rgb, depth, o.bbox, o.mask)
    return out
