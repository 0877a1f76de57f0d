"""Depth-based, class-agnostic perception against simulator ground truth (positions, never masks)."""
import numpy as np
import pytest

from koba_ros.perception.segmenter import perceive
from koba_ros.sim.cell import SimCell
from koba_ros.sim.layout import camera_intrinsics, camera_pose
from koba_ros.sim.scene import parse_scene

SCENE = {"seed": 2, "objects": [
    {"name": "red_cube", "box": "top_left", "xy": [-0.04, 0.0], "yaw": 0.3},
    {"name": "green_cube", "box": "top_left", "xy": [0.005, 0.0], "yaw": 0.3},   # touching the red cube
    {"name": "soccer_ball", "box": "top_right", "xy": [0.0, 0.0]},
    {"name": "domino", "box": "bottom_left", "xy": [0.0, 0.05]},
    {"name": "teddy_bear", "box": "bottom_right", "xy": [0.05, -0.05]},
    {"name": "blue_cylinder", "box": "bottom_right", "xy": [-0.05, 0.05]},
]}


@pytest.fixture(scope="module")
def seen():
    with SimCell(parse_scene(SCENE)) as cell:
        frame = cell.render()
        truth = [(cell.object_aabb(i), cell.object_box(i)) for i in range(len(SCENE["objects"]))]
    return frame, perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose), truth


def test_every_object_found_once_with_its_box_and_centroid(seen):
    frame, objects, truth = seen
    assert len(objects) == len(truth)
    for (lo, hi), box in truth:
        centre = (lo + hi) / 2
        nearest = min(objects, key=lambda o: np.linalg.norm(np.subtract(o.position[:2], centre[:2])))
        assert np.linalg.norm(np.subtract(nearest.position, centre)) < 0.01
        assert nearest.box == box


def test_object_fields(seen):
    frame, objects, _ = seen
    for i, obj in enumerate(objects):
        assert obj.id == i
        x, y, w, h = obj.bbox
        assert obj.mask.shape == frame.depth.shape and obj.mask[y:y + h, x:x + w].sum() == obj.mask.sum()
        assert obj.crop.shape[0] >= h and obj.crop.shape[1] >= w and obj.crop.dtype == np.uint8
        assert obj.features.ndim == 1 and np.all(np.isfinite(obj.features))
        assert all(0.005 < s < 0.12 for s in obj.size)
    red = [o for o in objects if "color:red" in o.attributes]
    assert len(red) == 1 and red[0].box == "top_left" and red[0].mean_rgb[0] > 0.5


def test_empty_and_missing_depth_give_no_objects():
    K, pose = camera_intrinsics(), camera_pose()
    rgb = np.zeros((480, 640, 3), np.uint8)
    assert perceive(rgb, np.full((480, 640), 0.79, np.float32), K, pose) == []   # just the box floors
    assert perceive(rgb, np.full((480, 640), np.nan, np.float32), K, pose) == []


def test_a_synthetic_block_is_found_without_the_simulator():
    """Class-agnostic: a 4 cm step in a flat depth image is an object, whatever it looks like."""
    K, pose = camera_intrinsics(), camera_pose()
    depth = np.full((480, 640), 0.79, np.float32)        # floor of the boxes: 0.80 - 0.01
    depth[100:130, 200:230] = 0.75
    rgb = np.full((480, 640, 3), 128, np.uint8)
    (obj,) = perceive(rgb, depth, K, pose)
    assert obj.bbox == (200, 100, 30, 30) and obj.box == "top_left"
    assert obj.size[2] == pytest.approx(0.04, abs=0.002)
