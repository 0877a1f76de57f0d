"""Class-agnostic object segmentation from an RGB-D frame: whatever stands above a box floor is an object.

Works on any calibrated depth camera (sim or RealSense): no simulator masks, no learned detector. Depth is
back-projected with K into the camera frame, moved into base_link with the camera pose, and a pixel is
foreground when it lies inside a box's walls and higher than FLOOR_CLEARANCE above that box's floor.
Touching objects are told apart by the height steps and colour edges between them: edge-free cores seed a
watershed over the foreground.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from koba_ros.perception.features import appearance
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.layout import BoxRegion, box_regions

FLOOR_CLEARANCE = 0.004   # m above the box floor; thinner than the thinnest object (a domino lying flat, ~8 mm)
WALL_MARGIN = 0.004       # m inside the walls, so wall faces seen at an angle are never foreground
MAX_HEIGHT = 0.30         # m; anything higher is the arm, not an object in a box
MIN_PIXELS = 40           # smaller regions are noise
MIN_SEED = 150            # px; an object core is larger than any printed pattern on it
HEIGHT_EDGE = 0.004      # m of height change per pixel: a step between touching objects
COLOUR_EDGE = 0.12      # colour change per pixel (0..1 per channel, summed)
CROP_PAD = 8              # px around a crop


def backproject(depth: np.ndarray, K: np.ndarray, camera_pose: np.ndarray) -> np.ndarray:
    """HxWx3 points in base_link (NaN where depth is missing or zero)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    R, t = camera_pose[:3, :3].astype(np.float32), camera_pose[:3, 3].astype(np.float32)
    return cam @ R.T + t


def foreground(points: np.ndarray, boxes: dict[str, BoxRegion]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: True where an object stands in a box, and the height above that box's floor."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    mask = np.zeros(x.shape, dtype=bool)
    height = np.zeros(x.shape, dtype=np.float32)
    for region in boxes.values():
        half = region.inner / 2 - WALL_MARGIN
        inside = (np.abs(x - region.centre[0]) <= half) & (np.abs(y - region.centre[1]) <= half)
        h = z - region.floor_z
        mask |= inside & (h > FLOOR_CLEARANCE) & (h < MAX_HEIGHT)
        height = np.where(inside, h, height)
    return mask, np.nan_to_num(height)


def boundaries(rgb: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Pixels on a height step or a colour edge: where two touching objects meet."""
    grad_h = np.hypot(ndimage.sobel(height, 0), ndimage.sobel(height, 1)) / 8      # m per pixel
    colour = rgb.astype(np.float32) / 255.0
    grad_c = sum(np.hypot(ndimage.sobel(colour[..., k], 0), ndimage.sobel(colour[..., k], 1)) for k in range(3)) / 8
    return (grad_h > HEIGHT_EDGE) | (grad_c > COLOUR_EDGE)


def long_axis(xy: np.ndarray) -> float:
    """Direction (radians in base_link x-y) perpendicular to the footprint's narrowest width.

    The narrowest width is where a parallel gripper closes; for a square that is along a side, which a
    principal-axis estimate would leave arbitrary.
    """
    angles = np.radians(np.arange(0, 180, 5))
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    projected = xy @ directions.T
    widths = np.percentile(projected, 97, axis=0) - np.percentile(projected, 3, axis=0)
    return float(angles[int(np.argmin(widths))] + np.pi / 2)


def box_of(x: float, y: float, boxes: dict[str, BoxRegion]) -> str:
    for region in boxes.values():
        if region.contains(x, y):
            return region.name
    return ""


def perceive(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, camera_pose: np.ndarray,
             boxes: dict[str, BoxRegion] | None = None, separate_touching: bool = True) -> list[PerceivedObject]:
    """Objects standing in the boxes, ordered top-to-bottom then left-to-right in the image.

    separate_touching=False is the plain connected-components baseline (touching objects merge).
    """
    boxes = boxes or box_regions()
    points = backproject(depth, K, camera_pose)
    mask, height = foreground(points, boxes)
    if not mask.any():
        return []
    # Work only inside the window around the foreground (the boxes), not the whole image.
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    win = (slice(max(rows[0] - 2, 0), rows[-1] + 3), slice(max(cols[0] - 2, 0), cols[-1] + 3))
    mask[win] = ndimage.binary_opening(mask[win], structure=np.ones((3, 3)))
    fg, ht = mask[win], height[win]
    # Seeds: foreground away from any edge, so touching objects start as separate seeds; then the seeds
    # grow back over the whole foreground (watershed on the height map) to recover each object's full mask.
    edges = boundaries(rgb[win], ht) if separate_touching else np.zeros_like(fg)
    cores = ndimage.binary_erosion(fg & ~edges, iterations=1)
    seeds, _ = ndimage.label(cores, structure=np.ones((3, 3)))
    sizes = np.bincount(seeds.ravel())
    seeds[sizes[seeds] < MIN_SEED] = 0   # texture specks (a ball's patches, printed text) join their object
    labels_win = watershed(-ht, seeds, mask=fg)
    # A region with no core at all (say a ball whose print breaks it into specks) is one object by itself.
    leftover, _ = ndimage.label(fg & (labels_win == 0), structure=np.ones((3, 3)))
    labels_win = np.where(leftover > 0, leftover + labels_win.max(), labels_win)
    labels = np.zeros(mask.shape, dtype=np.int32)
    labels[win] = labels_win
    objects = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        local = labels[window] == index
        if local.sum() >= MIN_PIXELS:
            objects.append(_describe(rgb, points, height, window, local, boxes))
    objects = [o for o in objects if o is not None]
    objects.sort(key=lambda o: (o.bbox[1] + o.bbox[3] / 2, o.bbox[0] + o.bbox[2] / 2))
    for i, obj in enumerate(objects):
        obj.id = i
    return objects


def _describe(rgb, points, height, window, local, boxes) -> PerceivedObject | None:
    ys, xs = np.nonzero(local)
    ys, xs = ys + window[0].start, xs + window[1].start
    pts, hts = points[window][local], height[window][local]
    full = np.zeros(height.shape, dtype=bool)
    full[window] = local
    top = float(np.percentile(hts, 98))
    # The upper half of an object is seen from above without perspective bias from its sides.
    upper = pts[hts >= 0.5 * top]
    cx, cy = np.mean(upper[:, 0]), np.mean(upper[:, 1])
    lo, hi = np.percentile(pts[:, :2], 2, axis=0), np.percentile(pts[:, :2], 98, axis=0)
    box = box_of(float(cx), float(cy), boxes)
    yaw = long_axis(upper[:, :2])
    if not box:
        return None
    floor = boxes[box].floor_z
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    colours = rgb[window][local].astype(np.float32) / 255.0
    features, attributes = appearance(colours, full[y0:y1, x0:x1], (hi - lo), top)
    h, w = height.shape
    crop = rgb[max(0, y0 - CROP_PAD):min(h, y1 + CROP_PAD), max(0, x0 - CROP_PAD):min(w, x1 + CROP_PAD)].copy()
    return PerceivedObject(
        id=0, bbox=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
        position=(float(cx), float(cy), float(floor + top / 2)),
        size=(float(hi[0] - lo[0]), float(hi[1] - lo[1]), top), box=box,
        mean_rgb=tuple(float(c) for c in colours.mean(axis=0)), attributes=attributes, features=features,
        crop=crop, mask=full, score=1.0, yaw=yaw)
