"""The real-time loop sim_node runs: commands from other threads are applied, frames and joint states flow."""
import threading

import numpy as np

from koba_ros.sim.cell import SimCell
from koba_ros.sim.realtime import RealTimeLoop
from koba_ros.sim.render_process import RenderProcess
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


def test_render_process_frames_match_the_cell_and_the_loop_does_not_wait_for_them():
    scene = parse_scene({"seed": 0, "objects": [{"name": "red_cube", "box": "top_left"},
                                                {"name": "duck", "box": "bottom_right"}]})
    with SimCell(scene) as cell, RenderProcess(scene) as renderer:
        cell.set_gripper(0.02)
        cell.step(60)                                   # the fingers and objects move: the render cell must follow
        renderer.request(cell.pose())
        frame = renderer.poll(timeout=60.0)
        here = cell.render()
        assert frame is not None and frame.stamp == here.stamp
        assert np.array_equal(frame.rgb, here.rgb) and np.array_equal(frame.depth, here.depth)
        frames = []
        loop = RealTimeLoop(cell, camera_hz=5.0, on_frame=frames.append, renderer=renderer)
        loop.run(threading.Event(), duration=1.5)
        assert frames and all(f.rgb.shape == (480, 640, 3) for f in frames)
        assert [f.stamp for f in frames] == sorted(f.stamp for f in frames)


def test_a_command_that_raises_is_reported_and_the_loop_goes_on():
    """One trajectory naming an unknown joint raised inside the loop and ended the simulation thread: the arm, the
    camera and /joint_states stopped while the node looked alive."""
    from koba_ros.sim.realtime import RealTimeLoop

    errors, done = [], []
    loop = RealTimeLoop(cell=object(), on_error=errors.append)
    loop.submit(lambda cell: ("panda_joint1",).index("panda_finger_joint1"))
    loop.submit(lambda cell: done.append(cell))
    loop._apply_commands()
    assert len(done) == 1 and len(errors) == 1 and "ValueError" in errors[0]


def test_closing_the_renderer_with_a_frame_in_flight_is_quick_and_clean():
    """Found by a walkthrough (session 26): Ctrl-C on a composed --headless graph took ~5 s, because the render child
    was blocked sending a frame nobody read (2 MB, far more than a pipe holds) and close() waited for it, then
    killed it."""
    import time

    scene = parse_scene({"seed": 0, "objects": [{"name": "red_cube", "box": "top_left"}]})
    with SimCell(scene) as cell:
        renderer = RenderProcess(scene)
        renderer.request(cell.pose())
        assert renderer.poll(timeout=60.0) is not None   # the child is up
        renderer.request(cell.pose())                     # a frame in flight, never read
        time.sleep(1.0)                                   # rendered: the child is inside its send
        start = time.monotonic()
        renderer.close()
        assert time.monotonic() - start < 3.0
        assert renderer._process.exitcode == 0            # it ended by itself, not by SIGKILL (-9)
