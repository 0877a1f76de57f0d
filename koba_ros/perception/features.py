"""Appearance features of one segmented object: colour histogram, colour name, size and shape descriptors.

These are what grounding matches words like "red", "round" or "the big one" against; the vector is the
embedding field of DetectedObject.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import rgb_to_hsv

# Reference colours of the words people use for these objects (sRGB 0..1).
COLOR_NAMES = {
    "red": (0.80, 0.10, 0.10), "green": (0.12, 0.62, 0.16), "blue": (0.12, 0.25, 0.85),
    "yellow": (0.95, 0.83, 0.10), "brown": (0.50, 0.30, 0.14), "tan": (0.80, 0.66, 0.46),
    "white": (0.93, 0.93, 0.91), "black": (0.08, 0.08, 0.08), "orange": (0.90, 0.50, 0.10),
}
HUE_BINS = 12


def colour_name(rgb: np.ndarray) -> str:
    names = list(COLOR_NAMES)
    refs = np.array([COLOR_NAMES[n] for n in names])
    return names[int(np.argmin(np.linalg.norm(refs - np.asarray(rgb), axis=1)))]


def pixel_hsv(colours: np.ndarray) -> np.ndarray:
    """HSV (0..1) of RGB pixels (..., 3, 0..1): matplotlib's, exactly (a grey object's faint hue decides its bin)."""
    return rgb_to_hsv(np.clip(colours, 0, 1))


def appearance(colours: np.ndarray, hsv: np.ndarray, mask: np.ndarray, extent_xy: np.ndarray, height: float
               ) -> tuple[np.ndarray, list[str]]:
    """(feature vector, attribute words) from the object's pixel colours (Nx3 RGB and their pixel_hsv, 0..1)
    and its mask crop."""
    # Hue histogram weighted by saturation (grey pixels carry no hue), plus value/saturation summaries.
    bins = np.minimum((hsv[:, 0] * HUE_BINS).astype(np.intp), HUE_BINS - 1)
    hist = np.bincount(bins, weights=hsv[:, 1], minlength=HUE_BINS)
    hist = hist / max(hist.sum(), 1e-6)
    long_side, short_side = float(max(extent_xy)), float(min(extent_xy))
    area = float(mask.sum())
    fill = area / mask.size                    # 1 for a square seen from above, pi/4 for a disc
    elongation = short_side / max(long_side, 1e-6)
    shape = [long_side, short_side, height, fill, elongation]
    features = np.concatenate([hist, hsv[:, 1:].mean(axis=0), hsv[:, 1:].std(axis=0), shape]).astype(np.float32)
    mean = colours.mean(axis=0)
    attributes = [f"color:{colour_name(mean)}",
                  f"shape:{'elongated' if elongation < 0.6 else 'round' if fill < 0.83 else 'square'}",
                  f"height_cm:{height * 100:.1f}"]
    return features, attributes
