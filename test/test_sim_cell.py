"""The simulated cell: world, camera geometry, trajectory execution with limits, ground truth."""
import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.sim.cell import ARM_JOINTS, SimCell
from koba_ros.sim.scene import parse_scene
from koba_ros.sim.trajectory import JointTrajectory


@pytest.fixture(scope="module")
def cell():
    scene = parse_scene({"seed": 1, "objects": [
        {"name": "red_cube", "box": "top_left", "xy": [0.0, 0.0], "yaw": 0.0},
        {"name": "blue_ball", "box": "bottom_right", "xy": [0.03, 0.03]},
        {"name": "duck", "box": "top_right"}, {"name": "mug", "box": "bottom_left"}]})
    with SimCell(scene) as c:
        yield c


def test_objects_rest_in_their_boxes(cell):
    assert [cell.object_box(i) for i in range(4)] == ["top_left", "bottom_right", "top_right", "bottom_left"]
    with pytest.raises(KobaError, match="not in the scene"):
        cell.object_box(9)


def test_render_shapes_and_camera_geometry(cell):
    frame = cell.render()
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    # Project the red cube's true centre with K and the camera pose: the pixel there is red and its depth matches.
    top = cell.object_aabb(0)[1][2]
    p = np.append(cell.object_position(0)[:2], top)
    cam = np.linalg.inv(frame.camera_pose) @ np.append(p, 1)
    u, v, _ = frame.K @ (cam[:3] / cam[2])
    r, g, b = frame.rgb[int(v), int(u)].astype(int)
    assert r > 120 and g < 80 and b < 80
    assert frame.depth[int(v), int(u)] == pytest.approx(cam[2], abs=0.005)
    # Image up is the far side: the top_left box is in the upper-left quadrant.
    cube_u, cube_v = u, v
    assert cube_u < 320 and cube_v < 240


def test_trajectory_is_followed_and_limits_enforced(cell):
    start = cell.arm_positions()
    goal = start.copy()
    goal[0] += 0.3
    cell.follow(JointTrajectory.make(ARM_JOINTS, [0.5, 1.0], [start + (goal - start) / 2, goal]))
    cell.step(int(1.3 * 240))
    assert cell.trajectory_done()
    assert np.allclose(cell.arm_positions(), goal, atol=0.02)
    beyond = goal.copy()
    beyond[3] = 0.5   # panda_joint4 must stay below about -0.07 rad
    with pytest.raises(KobaError, match="outside"):
        cell.follow(JointTrajectory.make(ARM_JOINTS, [3.0], [beyond]))
    fast = goal.copy()
    fast[0] -= 1.0
    with pytest.raises(KobaError, match="rad/s"):
        cell.follow(JointTrajectory.make(ARM_JOINTS, [0.1], [fast]))
    with pytest.raises(KobaError, match="NaN"):
        cell.follow(JointTrajectory.make(ARM_JOINTS, [1.0], [goal * np.nan]))
    # A rejected trajectory leaves the arm holding still.
    cell.step(60)
    assert np.allclose(cell.arm_positions(), goal, atol=0.02)


def test_gripper_opens_and_closes(cell):
    cell.set_gripper(0.0)
    cell.step(120)
    assert cell.gripper_width() < 0.005
    cell.set_gripper(0.08)
    cell.step(120)
    assert cell.gripper_width() > 0.075


def test_headless_composite_is_the_full_render():
    """The pre-rendered table and boxes + a render of what moves == one render of everything, pixel for pixel."""
    scene = parse_scene({"seed": 3, "objects": [{"name": "duck", "box": "top_left"},
                                                {"name": "green_cylinder", "box": "bottom_right"}]})
    with SimCell(scene) as composite, SimCell(scene, static_layer=False) as full:
        assert composite.static_layer is not None and full.static_layer is None
        a, b = composite.render(), full.render()
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.depth, b.depth)
