"""RealSense D4xx frames -> numpy (colour, depth in metres, intrinsics): the part of realsense_node that needs no ROS.

`frames_to_arrays` takes the pyrealsense2 frame objects' data already read out (arrays and an intrinsics
record), so it is tested without a camera; `RealSenseCamera` is the driver path that produces them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koba_ros.errors import KobaError


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    coeffs: tuple[float, ...] = (0.0,) * 5

    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.ppx], [0, self.fy, self.ppy], [0, 0, 1]], dtype=np.float64)


def frames_to_arrays(color: np.ndarray, depth_units: np.ndarray, depth_scale: float,
                     intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, depth float32 metres with NaN for no reading, K) from an aligned colour/depth pair."""
    if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
        raise KobaError(f"colour frame must be HxWx3 uint8 (rgb8), got {color.shape} {color.dtype}")
    if depth_units.shape != color.shape[:2]:
        raise KobaError(f"depth {depth_units.shape} is not aligned to colour {color.shape[:2]}")
    if (intrinsics.width, intrinsics.height) != (color.shape[1], color.shape[0]):
        raise KobaError("intrinsics are for another resolution than the colour frame")
    if not depth_scale > 0:
        raise KobaError(f"depth scale must be positive, got {depth_scale}")
    depth = depth_units.astype(np.float32) * np.float32(depth_scale)
    depth[depth_units == 0] = np.nan      # 0 = no depth reading on a RealSense
    return color, depth, intrinsics.K()


class RealSenseCamera:
    """A D4xx streaming rgb8 colour and z16 depth aligned to colour (pyrealsense2)."""

    def __init__(self, width: int = 640, height: int = 480, fps: int = 15, serial: str = ""):
        try:
            import pyrealsense2 as rs
        except ImportError:
            raise KobaError("pyrealsense2 is not installed (pip install pyrealsense2)") from None
        self.rs = rs
        if len(rs.context().query_devices()) == 0:
            raise KobaError("no RealSense camera connected")
        config = rs.config()
        if serial:
            config.enable_device(serial)
        config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(config)
        except RuntimeError as exc:
            raise KobaError(f"cannot start the RealSense pipeline: {exc}") from None
        self.depth_scale = profile.get_device().first_depth_sensor().get_depth_scale()
        self.align = rs.align(rs.stream.color)
        i = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.intrinsics = Intrinsics(i.width, i.height, i.fx, i.fy, i.ppx, i.ppy, tuple(i.coeffs))

    def read(self, timeout_ms: int = 1000):
        """The next aligned (rgb, depth metres, K), or None when no frame came in time."""
        try:
            frames = self.align.process(self.pipeline.wait_for_frames(timeout_ms))
        except RuntimeError:
            return None
        color, depth = frames.get_color_frame(), frames.get_depth_frame()
        if not color or not depth:
            return None
        return frames_to_arrays(np.asanyarray(color.get_data()), np.asanyarray(depth.get_data()),
                                self.depth_scale, self.intrinsics)

    def close(self) -> None:
        self.pipeline.stop()
