"""Review 26 of the picker side: Ctrl-C mid-pick, negative object sizes, picker_node's parameters. Each test fails on
the code before its fix."""
import threading

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.picking.kinematics import PandaKinematics
from koba_ros.picking.picker import Picker, Target
from koba_ros.picking.placement import place_among
from koba_ros.sim.layout import box_regions
from test.test_pick_review24 import RecordingArm


@pytest.fixture(scope="module")
def picker():
    p = Picker(RecordingArm(), PandaKinematics())
    yield p
    p.kin.close()


@pytest.mark.parametrize("size, width", [((0.04, 0.04, -0.03), 0.04), ((-0.05, 0.04, 0.04), 0.04),
                                         ((0.04, 0.04, 0.04), -0.01)])
def test_a_negative_size_or_width_is_refused_in_one_line(picker, size, width):
    """A height of -0.03 m planned the fingertips 7 mm below the destination box's floor (191 N against the box in the
    sim), and was accepted."""
    cx, cy = box_regions()["top_left"].centre
    with pytest.raises(KobaError, match="must not be negative") as info:
        picker.check_goal(Target((cx, cy, 0.03), size, 0.0, width), "bottom_right")
    assert "\n" not in str(info.value)


def test_placing_with_a_negative_size_does_not_size_a_grid_by_it():
    """place_among's grid grew with |size|: -200 m asked for arrays of gigabytes (a MemoryError out of execute)."""
    spot = place_among("bottom_right", [], (-200.0, -200.0, 0.04))
    region = box_regions()["bottom_right"]
    assert spot is not None and all(np.isfinite(spot))
    assert abs(spot[0] - region.centre[0]) < 0.2 and abs(spot[1] - region.centre[1]) < 0.2


@pytest.mark.ros
@pytest.mark.parametrize("name, value", [("joint_state_timeout", float("nan")), ("joint_state_timeout", 0.0),
                                         ("perception_timeout", -1.0), ("frame_latency", float("inf")),
                                         ("frame_latency", -0.5)])
def test_picker_node_refuses_bad_timeouts_in_one_line(ros_context, name, value):
    """A NaN joint_state_timeout made a goal wait forever once /joint_states stopped (session 22's fault again); 0
    failed every goal."""
    from rclpy.parameter import Parameter

    from koba_ros.nodes.picker_node import PickerNode

    with pytest.raises(KobaError, match=name) as info:
        PickerNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])
    assert "\n" not in str(info.value)


@pytest.mark.ros
def test_spin_tells_a_nodes_running_work_to_stop_before_it_waits_for_it():
    """Ctrl-C mid-pick: the executor waited for the running pick before destroy_node set its cancel flag, and the pick
    noticed only when /joint_states timed out (5 s, the arm still moving). spin now calls stop_work first."""
    import rclpy
    from rclpy.node import Node

    from koba_ros.nodes.runtime import spin

    class Working(Node):
        def __init__(self):
            super().__init__("working_node")
            self.cancel, self.order = threading.Event(), []
            self.create_timer(0.01, self.work)
            self.started = threading.Event()

        def work(self):   # a pick: runs until cancelled (at most 10 s)
            self.started.set()
            self.cancel.wait(10)
            self.order.append("work ended")

        def stop_work(self):
            self.order.append("stop_work")
            self.cancel.set()

        def destroy_node(self):
            self.order.append("destroy_node")
            super().destroy_node()

    rclpy.init()   # spin's executor lives in the default context, as in a node process
    try:
        node = Working()
        stop = threading.Event()
        threading.Thread(target=lambda: (node.started.wait(10), stop.set())).start()
        spin([node], stop)
        assert node.order[:3] == ["stop_work", "work ended", "destroy_node"], node.order
    finally:
        rclpy.try_shutdown()


def test_the_join_to_a_plan_is_checked_like_every_planned_move(picker):
    """The move joining the arm to a plan's start (the arm not where the plan assumed: a finger stopped by the object,
    a restarted sim) skipped the workspace check that every planned move gets (a review's suspected item)."""
    from koba_ros.picking.motion import joint_move
    from koba_ros.picking.picker import HOME

    arm = picker.arm
    outside = np.array(HOME)
    outside[0], outside[1] = 1.0, 0.8           # the tool at (-0.04, -0.07, 0.12) m: outside, and not near home
    assert not picker.workspace.contains(picker.kin.fk(outside)[0])
    cx, cy = box_regions()["top_left"].centre
    q_above = picker.kin.ik((cx, cy, 0.2), picker.kin.fk(HOME)[1])
    plan = picker._checked(joint_move(np.array(HOME), q_above, picker.kin.max_velocity), np.array(HOME))   # as planned
    arm.q, arm.trajectories = outside.copy(), []
    with pytest.raises(KobaError, match="leaves the workspace"):
        picker._run(plan, threading.Event())
    assert arm.trajectories == []
