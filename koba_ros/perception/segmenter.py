"""Class-agnostic object segmentation from an RGB-D frame: whatever stands above a box floor is an object.

Works on any calibrated depth camera (sim or RealSense): no simulator masks, no learned detector. Depth is
back-projected with K into the camera frame, moved into base_link with the camera pose, and a pixel is
foreground when it lies inside a box's walls and higher than FLOOR_CLEARANCE above that box's floor.
Touching objects are told apart by the height steps and colour edges between them: edge-free cores seed a
watershed over the foreground.

Speed: all image work runs inside the boxes' window (the part of the image that can show anything standing in
a box, fixed for a camera pose), the per-pixel rays of that window are computed once per camera, image
filters are OpenCV's, and per-object quantiles come from one partition of contiguous rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from koba_ros.perception.crops import object_crop
from koba_ros.perception.features import appearance, pixel_hsv
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.layout import BoxRegion, box_regions

FLOOR_CLEARANCE = 0.004   # m above the box floor; thinner than the thinnest object (a domino lying flat, ~8 mm)
WALL_MARGIN = 0.004       # m inside the walls, so wall faces seen at an angle are never foreground
MAX_HEIGHT = 0.30         # m; anything higher is the arm, not an object in a box
MIN_PIXELS = 40           # smaller regions are noise
MIN_SEED = 150            # px; an object core is larger than any printed pattern on it
HEIGHT_EDGE = 0.004      # m of height change per pixel: a step between touching objects
COLOUR_EDGE = 0.12      # colour change per pixel (0..1 per channel, summed)
WINDOW_PAD = 2            # px around the boxes' window (filters see background at its border)
SQUARE = np.ones((3, 3), np.uint8)
CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class _View:
    """What a camera sees of the boxes: the image window and its per-pixel rays in base_link."""
    window: tuple[slice, slice]
    rays: np.ndarray      # 3 x h x w float32: base_link direction of each window pixel per metre of depth
    origin: np.ndarray    # camera position in base_link, float32


@lru_cache(maxsize=8)
def _view(K_bytes: bytes, pose_bytes: bytes, shape: tuple[int, int], regions: tuple[BoxRegion, ...]) -> _View:
    K, pose = np.frombuffer(K_bytes).reshape(3, 3), np.frombuffer(pose_bytes).reshape(4, 4)
    h, w = shape
    R, t = pose[:3, :3], pose[:3, 3]
    # Window: the boxes' insides projected at floor height and at MAX_HEIGHT above it (taller things are ignored).
    corners = np.array([(r.centre[0] + sx * r.inner / 2, r.centre[1] + sy * r.inner / 2, r.floor_z + dz)
                        for r in regions for sx in (-1, 1) for sy in (-1, 1) for dz in (0.0, MAX_HEIGHT)])
    cam = (corners - t) @ R                       # base_link -> camera frame
    if np.all(cam[:, 2] > 0):
        u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
        v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
        c0, c1 = max(int(np.floor(u.min())) - WINDOW_PAD, 0), min(int(np.ceil(u.max())) + WINDOW_PAD + 1, w)
        r0, r1 = max(int(np.floor(v.min())) - WINDOW_PAD, 0), min(int(np.ceil(v.max())) + WINDOW_PAD + 1, h)
    else:                                         # a box behind the camera: no useful window, use the image
        r0, r1, c0, c1 = 0, h, 0, w
    uu, vv = np.meshgrid(np.arange(c0, c1, dtype=np.float64), np.arange(r0, r1, dtype=np.float64))
    directions = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], axis=-1)
    rays = np.ascontiguousarray(np.moveaxis(directions @ R.T, -1, 0), dtype=np.float32)
    return _View((slice(r0, r1), slice(c0, c1)), rays, t.astype(np.float32))


def view_of(K: np.ndarray, camera_pose: np.ndarray, shape: tuple[int, int], boxes: dict[str, BoxRegion]) -> _View:
    return _view(np.ascontiguousarray(K, np.float64).tobytes(), np.ascontiguousarray(camera_pose, np.float64).tobytes(),
                 tuple(shape), tuple(boxes.values()))


def backproject(depth: np.ndarray, view: _View) -> np.ndarray:
    """Points in base_link for the view's window of `depth`: x, y, z planes (3 x h x w), NaN where depth is missing."""
    d = depth[view.window]
    z = np.where(np.isfinite(d) & (d > 0), d, np.nan).astype(np.float32)
    return view.rays * z + view.origin[:, None, None]


def foreground(points: np.ndarray, boxes: dict[str, BoxRegion]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: True where an object stands in a box, and the height above that box's floor (0 outside boxes)."""
    x, y, z = points
    mask = np.zeros(x.shape, dtype=bool)
    height = np.zeros(x.shape, dtype=np.float32)
    for region in boxes.values():
        half = region.inner / 2 - WALL_MARGIN
        inside = (np.abs(x - region.centre[0]) <= half) & (np.abs(y - region.centre[1]) <= half)
        h = z - region.floor_z
        mask |= inside & (h > FLOOR_CLEARANCE) & (h < MAX_HEIGHT)
        np.copyto(height, h, where=inside)
    return mask, np.nan_to_num(height, copy=False)


def _gradient(image: np.ndarray, scale: float) -> np.ndarray:
    """Sobel gradient magnitude of each channel times `scale`, the border reflected."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=scale, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=scale, borderType=cv2.BORDER_REFLECT)
    return cv2.magnitude(gx, gy)


def boundaries(rgb: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Pixels on a height step or a colour edge: where two touching objects meet."""
    # A 3x3 Sobel sums 8 weighted differences: / 8 gives change per pixel; colour in 0..1 per channel.
    grad_c = _gradient(rgb, 1 / (8 * 255)).reshape(-1, 3) @ np.ones(3, np.float32)
    return (_gradient(height, 1 / 8) > HEIGHT_EDGE) | (grad_c.reshape(height.shape) > COLOUR_EDGE)


def long_axis(xy: np.ndarray) -> tuple[float, float]:
    """Direction (radians in base_link x-y) perpendicular to the footprint's narrowest width, and that width (m).

    The narrowest width is where a parallel gripper closes; for a square that is along a side, which a
    principal-axis estimate would leave arbitrary. Widths are 3rd-97th percentile spans (robust to stray
    edge pixels), so they read about 6% short of a flat face's true width.
    """
    angles = np.radians(np.arange(0, 180, 5))
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    lo, hi = quantiles(xy, 0.03, 0.97, project=directions)
    best = int(np.argmin(hi - lo))
    return float(angles[best] + np.pi / 2), float(hi[best] - lo[best])


def quantiles(values: np.ndarray, low: float, high: float, project: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """`low` and `high` quantiles (np.percentile's linear interpolation, same numbers) of each column of `values`
    (N x D), or of `values` projected on each row of `project` (M x D).

    One partition of contiguous rows finds both; np.percentile along axis 0 of an N x 36 projection was most
    of the old per-object cost.
    """
    n = len(values)
    columns = (values.T if project is None else project @ values.T).reshape(-1, n)   # one contiguous row each
    positions = np.array([low, high]) * (n - 1)
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, n - 1)
    ordered = np.partition(columns, np.unique(np.concatenate([below, above])), axis=1)
    value = ordered[:, below] + (ordered[:, above] - ordered[:, below]) * (positions - below)
    return value[:, 0], value[:, 1]


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
    view = view_of(K, camera_pose, depth.shape, boxes)
    points = backproject(depth, view)
    fg, height = foreground(points, boxes)
    if not fg.any():
        return []
    fg = cv2.morphologyEx(fg.view(np.uint8), cv2.MORPH_OPEN, SQUARE, borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).view(bool)
    rgb_win = rgb[view.window]
    # Seeds: foreground away from any edge, so touching objects start as separate seeds; then the seeds
    # grow back over the whole foreground (watershed on the height map) to recover each object's full mask.
    edges = boundaries(rgb_win, height) if separate_touching else np.zeros_like(fg)
    cores = cv2.erode((fg & ~edges).view(np.uint8), CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    _, seeds, stats, _ = cv2.connectedComponentsWithStats(cores, connectivity=8, ltype=cv2.CV_32S)
    big = stats[:, cv2.CC_STAT_AREA] >= MIN_SEED   # texture specks (a ball's patches, printed text) join their object
    big[0] = False
    seeds = np.where(big[seeds], seeds, 0)
    labels = watershed(-height, seeds, mask=fg)
    # A region with no core at all (say a ball whose print breaks it into specks) is one object by itself.
    _, leftover = cv2.connectedComponents((fg & (labels == 0)).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    labels = np.where(leftover > 0, leftover + labels.max(), labels)
    # HSV of every foreground pixel in one call, not one call per object (the same numbers either way).
    hsv = np.zeros(rgb_win.shape, np.float32)
    hsv[fg] = pixel_hsv(rgb_win[fg].astype(np.float32) / 255.0)
    objects = []
    for index, local_window in enumerate(ndimage.find_objects(labels), start=1):
        if local_window is None:
            continue
        local = labels[local_window] == index
        if np.count_nonzero(local) >= MIN_PIXELS:
            obj = _describe(rgb, hsv, points, height, view.window, local_window, local, boxes)
            if obj is not None:
                objects.append(obj)
    objects.sort(key=lambda o: (o.bbox[1] + o.bbox[3] / 2, o.bbox[0] + o.bbox[2] / 2))
    for i, obj in enumerate(objects):
        obj.id = i
        obj.crop = object_crop(rgb, depth, obj.bbox, obj.mask)   # what grounding's crop encoder reads
    return objects


def _describe(rgb, hsv, points, height, window, local_window, local, boxes) -> PerceivedObject | None:
    """One object from its mask `local` over `local_window` (slices into the boxes' window `window`)."""
    pts, hts = points[(slice(None), *local_window)][:, local].T, height[local_window][local]
    top = float(quantiles(hts, 0.98, 0.98)[1][0])
    # The upper half of an object is seen from above without perspective bias from its sides.
    upper = pts[hts >= 0.5 * top]
    cx, cy = upper[:, 0].mean(dtype=np.float64), upper[:, 1].mean(dtype=np.float64)
    box = box_of(float(cx), float(cy), boxes)
    if not box:
        return None
    lo, hi = quantiles(pts[:, :2], 0.02, 0.98)
    yaw, width = long_axis(upper[:, :2])
    floor = boxes[box].floor_z
    # Image coordinates: the object's window inside the boxes' window inside the image.
    y0, y1 = window[0].start + local_window[0].start, window[0].start + local_window[0].stop
    x0, x1 = window[1].start + local_window[1].start, window[1].start + local_window[1].stop
    colours = rgb[window][local_window][local].astype(np.float32) / 255.0
    features, attributes = appearance(colours, hsv[local_window][local], local, (hi - lo), top)
    full = np.zeros(rgb.shape[:2], dtype=bool)
    full[y0:y1, x0:x1] = local
    return PerceivedObject(
        id=0, bbox=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
        position=(float(cx), float(cy), float(floor + top / 2)),
        size=(float(hi[0] - lo[0]), float(hi[1] - lo[1]), top), box=box,
        mean_rgb=tuple(float(c) for c in colours.mean(axis=0)), attributes=attributes, features=features,
        mask=full, score=1.0, yaw=yaw, width=width)
