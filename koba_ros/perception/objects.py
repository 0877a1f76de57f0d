"""PerceivedObject: what perception hands to grounding and picking (ROS-free twin of DetectedObject.msg)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PerceivedObject:
    id: int
    bbox: tuple[int, int, int, int]            # x, y, width, height in image pixels
    position: tuple[float, float, float]       # centroid in base_link, metres
    size: tuple[float, float, float]           # extent along base_link x, y, z, metres
    box: str                                   # top_left | top_right | bottom_left | bottom_right | ""
    mean_rgb: tuple[float, float, float]       # mean colour of the mask, 0..1
    attributes: list[str] = field(default_factory=list)   # e.g. "color:red", "shape:round"
    features: np.ndarray | None = None         # appearance vector (colour histogram, shape descriptors)
    crop: np.ndarray | None = None             # 5x48x48 uint8: RGB, own mask, height above the floor
                                               # (perception/crops.py; what grounding's crop encoder reads)
    mask: np.ndarray | None = None             # HxW bool in the full image
    score: float = 1.0
    yaw: float = 0.0                           # direction of the long axis in base_link x-y, radians
    width: float = 0.0                         # footprint width across the long axis (fingers close), m; 0: unknown
