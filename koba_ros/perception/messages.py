"""Camera and perception messages <-> numpy, shared by sim_node, realsense_node and perception_node.

Encodings follow the RealSense ROS driver: colour rgb8, aligned depth 16UC1 in millimetres (or 32FC1 in
metres), CameraInfo with the plumb_bob model and K/P from the pinhole intrinsics.
"""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point, Vector3
from koba_interfaces.msg import DetectedObject, DetectedObjectArray
from sensor_msgs.msg import CameraInfo, Image

from koba_ros.errors import KobaError
from koba_ros.perception.crops import CHANNELS, SIDE
from koba_ros.perception.objects import PerceivedObject


def rgb_to_msg(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def depth_to_msg(depth_m: np.ndarray, stamp, frame_id: str, encoding: str = "32FC1") -> Image:
    """Depth in metres as 32FC1, or as 16UC1 millimetres (0 = no reading) like the RealSense driver."""
    h, w = depth_m.shape
    if encoding == "32FC1":
        data, step = np.ascontiguousarray(depth_m, dtype=np.float32), w * 4
    elif encoding == "16UC1":
        mm = np.nan_to_num(depth_m * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        data, step = np.clip(np.round(mm), 0, 65535).astype(np.uint16), w * 2
    else:
        raise KobaError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = data.tobytes()
    return msg


def _rows(msg: Image, dtype) -> np.ndarray:
    """The image's rows as [height, step / itemsize] of `dtype` (in the message's byte order), after checking that
    its size fields agree with its data: a publisher's mistake is one line, not a reshape error in a callback."""
    itemsize, channels = np.dtype(dtype).itemsize, 3 if msg.encoding in ("rgb8", "bgr8") else 1
    if msg.step < msg.width * channels * itemsize or msg.step % itemsize or len(msg.data) != msg.height * msg.step:
        raise KobaError(f"{msg.encoding} image of {msg.width}x{msg.height}, step {msg.step}, has {len(msg.data)} "
                        "bytes of data: its size fields do not agree")
    order = ">" if msg.is_bigendian else "<"
    return np.frombuffer(bytes(msg.data), dtype=np.dtype(dtype).newbyteorder(order)).reshape(
        msg.height, msg.step // itemsize)


def msg_to_rgb(msg: Image) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise KobaError(f"colour image encoding {msg.encoding!r} unsupported (rgb8, bgr8)")
    rows = _rows(msg, np.uint8)
    image = rows[:, :msg.width * 3].reshape(msg.height, msg.width, 3)
    return image[:, :, ::-1].copy() if msg.encoding == "bgr8" else image.copy()


def msg_to_depth(msg: Image, depth_scale: float = 0.001) -> np.ndarray:
    """Depth in metres (NaN where there is no reading); 16UC1 is scaled by depth_scale (mm -> m)."""
    if msg.encoding == "32FC1":
        dtype, scale = np.float32, 1.0
    elif msg.encoding in ("16UC1", "mono16"):
        dtype, scale = np.uint16, depth_scale
    else:
        raise KobaError(f"depth image encoding {msg.encoding!r} unsupported (32FC1, 16UC1)")
    rows = _rows(msg, dtype)  # a big-endian camera's depth is read in its own byte order
    depth = rows[:, :msg.width].astype(np.float32) * scale
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def camera_info_msg(K: np.ndarray, width: int, height: int, stamp, frame_id: str,
                    distortion: tuple[float, ...] = (0.0,) * 5) -> CameraInfo:
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.k = [float(v) for v in np.asarray(K).ravel()]
    msg.d = [float(v) for v in distortion]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = [float(v) for v in P.ravel()]
    return msg


def msg_to_K(msg: CameraInfo) -> np.ndarray:
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)):  # a NaN centre reached int() in the segmenter and ended the node
        raise KobaError(f"CameraInfo K has non-finite values: {K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise KobaError("CameraInfo has no intrinsics (K is zero)")
    return K


def objects_to_msg(objects: list[PerceivedObject], stamp, frame_id: str = "base_link") -> DetectedObjectArray:
    out = DetectedObjectArray()
    out.header.stamp, out.header.frame_id = stamp, frame_id
    for o in objects:
        x, y, w, h = o.bbox
        out.objects.append(DetectedObject(
            id=o.id, label="object", score=float(o.score), x=x, y=y, width=w, height=h,
            position=Point(x=o.position[0], y=o.position[1], z=o.position[2]),
            size=Vector3(x=o.size[0], y=o.size[1], z=o.size[2]), box=o.box,
            attributes=[*o.attributes, f"yaw:{o.yaw:.4f}", f"width:{o.width:.4f}",
                        "mean_rgb:" + ",".join(f"{c:.3f}" for c in o.mean_rgb)],
            embedding=[float(v) for v in (o.features if o.features is not None else [])],
            crop=crop_to_bytes(o.crop)))
    return out


def crop_to_bytes(crop: np.ndarray | None) -> bytes:
    """DetectedObject.crop: the CHANNELS x SIDE x SIDE uint8 crop in C order, or empty (no crop)."""
    return b"" if crop is None else np.ascontiguousarray(crop, dtype=np.uint8).tobytes()


def bytes_to_crop(data) -> np.ndarray | None:
    """The crop back (None when empty). Bytes of another length stay a flat array, so a crop model says which
    object's crop has the wrong shape instead of this callback failing on the whole message."""
    flat = np.frombuffer(bytes(data), dtype=np.uint8).copy()
    if flat.size == 0:
        return None
    return flat.reshape(CHANNELS, SIDE, SIDE) if flat.size == CHANNELS * SIDE * SIDE else flat


def _finite(value, n: int, where: str) -> tuple[float, ...]:
    """n finite floats from a sequence or a comma-separated attribute, else a KobaError naming `where`: one NaN
    would make every grounding probability NaN."""
    try:
        numbers = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except ValueError:
        numbers = ()
    if len(numbers) != n or not all(map(math.isfinite, numbers)):
        raise KobaError(f"{where} must be {n} finite number{'s' * (n > 1)}, got {value!r:.80}")
    return numbers


def msg_to_objects(msg: DetectedObjectArray) -> list[PerceivedObject]:
    """The ROS-free twin of each DetectedObject (the crop travels, the full-image mask does not). A non-finite or
    malformed number anywhere is a KobaError naming the object and field, so a subscriber drops the whole message."""
    objects = []
    for d in msg.objects:
        where = f"DetectedObject {d.id}:"
        carried = ("yaw:", "width:", "mean_rgb:")   # fields DetectedObject has no slot for ride as attributes
        attributes = [a for a in d.attributes if not a.startswith(carried)]
        extra = dict(a.split(":", 1) for a in d.attributes if a.startswith(carried))
        (yaw,) = _finite(extra.get("yaw", "0"), 1, f"{where} yaw")
        (width,) = _finite(extra.get("width", "0"), 1, f"{where} width")
        (score,) = _finite([d.score], 1, f"{where} score")
        objects.append(PerceivedObject(
            id=d.id, bbox=(d.x, d.y, d.width, d.height),
            position=_finite((d.position.x, d.position.y, d.position.z), 3, f"{where} position"),
            size=_finite((d.size.x, d.size.y, d.size.z), 3, f"{where} size"), box=d.box,
            mean_rgb=_finite(extra.get("mean_rgb", "0,0,0"), 3, f"{where} mean_rgb"), attributes=attributes,
            features=np.array(d.embedding, dtype=np.float32), score=score, yaw=yaw, width=width,
            crop=bytes_to_crop(d.crop)))
    return objects


def camera_pose_from_values(values) -> np.ndarray:
    """A camera pose parameter (16 numbers, row-major) as a 4x4 matrix, or a one-line KobaError. A NaN, or a rotation
    that is none (a typo in one of the 16 numbers), used to place every object nowhere, silently; 1e-2: a matrix
    copied at 3 decimals (as tf2_echo prints it) passes."""
    try:
        pose = np.array(values, dtype=np.float64).reshape(4, 4)
    except ValueError:
        raise KobaError(f"camera_pose must be 16 numbers (4x4, row-major), got {len(values)}") from None
    if not np.allclose(pose[3], (0, 0, 0, 1)):
        raise KobaError("camera_pose's last row must be 0 0 0 1")
    rotation = pose[:3, :3]
    if not (np.isfinite(pose).all() and np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-2)
            and np.isclose(np.linalg.det(rotation), 1.0, atol=1e-2)):
        raise KobaError("camera_pose must be finite with a rotation (orthonormal, determinant 1) in its upper left 3x3")
    return pose

