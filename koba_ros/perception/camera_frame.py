"""One paired camera frame made ready for the segmenter, ROS-free: the colour image, the aligned depth image and the
intrinsics' image size must belong together (a CameraInfo of another stream gave no objects and no error), and the
depth's small holes are filled (depth_holes.py). perception_node converts the messages and calls this."""
from __future__ import annotations

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.perception.depth_holes import fill_depth_holes


def depth_for_segmenter(rgb: np.ndarray, depth: np.ndarray, intrinsics_size: tuple[int, int] | None,
                        max_hole_px: int | None) -> np.ndarray:
    """`depth` checked against `rgb` and the (height, width) the intrinsics are for (None, or a 0 in it: a
    camera_info that leaves its size out), with holes of at most `max_hole_px` pixels filled (None: not filled)."""
    if rgb.shape[:2] != depth.shape:
        raise KobaError(f"colour {rgb.shape[:2]} and depth {depth.shape} sizes differ (align depth to colour)")
    if intrinsics_size is not None and 0 not in intrinsics_size and tuple(intrinsics_size) != depth.shape:
        height, width = intrinsics_size
        raise KobaError(f"camera_info is for {width}x{height} images, the images are "
                        f"{depth.shape[1]}x{depth.shape[0]}: frame skipped (camera_info of another stream?)")
    return fill_depth_holes(depth, max_hole_px) if max_hole_px else depth
