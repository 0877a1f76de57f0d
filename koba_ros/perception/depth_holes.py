"""Filling small holes in a depth image (pixels with no reading) before segmentation.

A RealSense leaves pixels without depth (NaN here; 0 in its 16UC1 images): specks where the stereo match failed on
a shiny or dark patch, and thin strips along edges that one of its two infrared views cannot see. The segmenter
treats a pixel without depth as not part of any object, so a two-pixel strip across an object cuts it in two, and
20 % of its pixels missing at random leaves five fragments of one object.

What is filled, and why this is safe without a model of the scene:
- Only holes of at most `max_hole_px` pixels (8-connected regions of invalid pixels). A small hole lies inside one
  surface or on the border of two, and the surface around it continues across it; a large region without depth
  (an object the camera cannot see, the space beyond its range) has no such surface nearby, and guessing one would
  invent an object or a floor. Those stay invalid.
- Each hole pixel takes the depth of the nearest valid pixel. On a border the hole is split between the two sides
  by distance, so an object's edge moves by at most half the hole's width; no depth between the two surfaces is
  made up (an average would put points in mid-air, a "flying pixel" that the segmenter could see as a step).
- Valid pixels are never changed, so a frame without holes (every simulated frame) passes bit-identical.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), bool)


def fill_depth_holes(depth: np.ndarray, max_hole_px: int) -> np.ndarray:
    """`depth` (metres; NaN, inf or <= 0 where there is no reading) with its holes of at most `max_hole_px` pixels
    filled from the nearest valid pixel. The input itself when there is nothing to fill, else a new array; larger
    holes, and an image with no valid pixel, are left as they are."""
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D image, got shape {depth.shape}")
    invalid = ~(np.isfinite(depth) & (depth > 0))
    if max_hole_px <= 0 or not invalid.any() or invalid.all():
        return depth
    labels, count = ndimage.label(invalid, structure=EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = (sizes <= max_hole_px)
    small[0] = False                      # label 0: the valid pixels
    fill = small[labels]
    if not fill.any():
        return depth
    # For every pixel, the row and column of the nearest valid pixel (its own for a valid one).
    _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
    filled = depth.copy()
    filled[fill] = depth[rows[fill], cols[fill]]
    return filled
