"""The real-time loop sim_node runs: commands from other threads are applied, frames and joint states flow."""
import threading

from koba_ros.sim.cell import SimCell
from koba_ros.sim.realtime import RealTimeLoop
from koba_ros.sim.scene import parse_scene


def test_loop_applies_commands_and_reports():
    with SimCell(parse_scene({"seed": 0, "objects": [{"name": "red_cube", "box": "top_left"}]})) as cell:
        frames, joints = [], []
        loop = RealTimeLoop(cell, camera_hz=2.0, joint_hz=20.0, on_frame=frames.append,
                            on_joints=lambda names, q, qd, t: joints.append((names, q)))
        loop.submit(lambda c: c.set_gripper(0.01))
        loop.run(threading.Event(), duration=1.0)
        assert cell.gripper_target == 0.01
        assert frames and frames[0].rgb.shape == (480, 640, 3)
        assert len(joints) >= 2 and joints[0][0][0] == "panda_joint1"
        assert loop.sim_elapsed > 0 and loop.wall_elapsed >= 1.0
