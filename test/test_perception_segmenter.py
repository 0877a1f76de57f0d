"""Depth-based, class-agnostic perception against simulator ground truth (positions, never masks)."""
import numpy as np
import pytest

from koba_ros.perception.segmenter import perceive, quantiles
from koba_ros.sim.cell import SimCell
from koba_ros.sim.layout import box_regions, camera_intrinsics, camera_pose
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
        assert obj.crop.shape == (5, 48, 48) and obj.crop.dtype == np.uint8   # perception/crops.py
        assert obj.crop[3, 24, 24] == 255 and obj.crop[4].max() > 0          # its own mask, its height
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


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_quantiles_are_numpys_percentiles(n):
    xy = np.random.default_rng(n).normal(size=(n, 2)).astype(np.float32)
    lo, hi = quantiles(xy, 0.02, 0.98)
    np.testing.assert_allclose(lo, np.percentile(xy, 2, axis=0), rtol=1e-6)
    np.testing.assert_allclose(hi, np.percentile(xy, 98, axis=0), rtol=1e-6)
    directions = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    lo, hi = quantiles(xy, 0.03, 0.97, project=directions)
    np.testing.assert_allclose(hi, np.percentile(xy @ directions.T, 97, axis=0), rtol=1e-5, atol=1e-6)


def test_objects_at_the_image_edge_of_the_boxes_are_in_the_window():
    """The work window is the boxes' projection: a block against a far wall corner is still found whole."""
    K, pose = camera_intrinsics(), camera_pose()
    region = box_regions()["top_left"]
    corner = np.array([region.centre[0] + region.inner / 2 - 0.02, region.centre[1] + region.inner / 2 - 0.02,
                       region.floor_z + 0.10])   # a 10 cm tall block's top, 2 cm from the far-left corner
    cam = np.linalg.inv(pose) @ np.append(corner, 1.0)
    u, v = K[0, 0] * cam[0] / cam[2] + K[0, 2], K[1, 1] * cam[1] / cam[2] + K[1, 2]
    depth = np.full((480, 640), 0.79, np.float32)
    depth[int(v) - 5:int(v) + 5, int(u) - 5:int(u) + 5] = cam[2]
    (obj,) = perceive(np.full((480, 640, 3), 90, np.uint8), depth, K, pose)
    assert obj.box == "top_left" and obj.bbox == (int(u) - 5, int(v) - 5, 10, 10)
