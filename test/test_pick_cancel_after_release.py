"""A "stop" after the object is let go: the pick says it is placed, the arm stops, nothing waits for perception.

Session 27 (suspected by session 26's review): a cancel during the retreat was reported as "cancelled" with success
false although the object lay in the box, a cancel on the way home still waited up to perception_timeout to verify,
and picker_node's wait for fresh objects never looked at the cancel flag."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from koba_ros.picking.picker import HOME, MAX_OPENING, Picker, Target
from test.test_grounding_review26 import _Future, _Handle, goal_node  # noqa: F401 (fixture)
from test.test_pick_picker import RecordingArm, kinematics  # noqa: F401 (fixture)

CUBE = Target((0.45, 0.2, 0.02), (0.04, 0.04, 0.04), 0.0)


class CancellingArm(RecordingArm):
    """Instant arm that sets the cancel flag when `when(arm)` says so, after its command; a cancelled move stops."""

    def __init__(self, cancel, when):
        super().__init__()
        self.cancel, self.when, self.grips = cancel, when, []

    def execute(self, traj, cancel):
        if cancel.is_set():
            return False
        done = super().execute(traj, cancel)
        if self.when(self):
            self.cancel.set()
        return done

    def gripper(self, width, cancel):
        self.grips.append(width)
        width = super().gripper(width, cancel)
        if self.when(self):
            self.cancel.set()
        return width


def _released(arm) -> bool:
    return arm.grips[-1:] == [MAX_OPENING] and 0.0 in arm.grips


def test_a_stop_right_after_the_release_reports_the_object_placed(kinematics):  # noqa: F811
    cancel = threading.Event()
    arm = CancellingArm(cancel, _released)
    verified = []
    result = Picker(arm, kinematics).pick_place(CUBE, "top_right", cancel=cancel, verify=lambda: verified.append(1))
    assert result.success and result.message.startswith("placed in top_right (not verified: cancelled after the")
    assert "the arm stopped" in result.message and verified == []
    assert not np.allclose(arm.q, HOME)   # the retreat was not run: the arm stopped over the box


def test_a_stop_on_the_way_home_skips_the_wait_to_verify(kinematics):  # noqa: F811
    cancel = threading.Event()
    arm = CancellingArm(cancel, lambda a: _released(a) and len(a.trajectories) >= 6)   # after the retreat ran
    verified = []
    result = Picker(arm, kinematics).pick_place(CUBE, "top_right", cancel=cancel, verify=lambda: verified.append(1))
    assert result.success and "cancelled on the way home" in result.message and verified == []


def test_a_stop_before_the_release_is_still_a_cancelled_pick(kinematics):  # noqa: F811
    cancel = threading.Event()
    arm = CancellingArm(cancel, lambda a: 0.0 in a.grips)   # once the fingers have closed on the cube
    result = Picker(arm, kinematics).pick_place(CUBE, "top_right", cancel=cancel)
    assert not result.success and result.message == "cancelled; the arm stopped"
    assert MAX_OPENING not in arm.grips[1:]   # never let go over the box


@pytest.mark.ros
def test_picker_node_stops_waiting_for_perception_when_cancelled(ros_context):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.picker_node import PickerNode

    node = PickerNode(context=ros_context, parameter_overrides=[Parameter("perception_timeout", value=30.0)])
    try:
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        start = time.monotonic()
        assert node.fresh_objects(cancel) is None
        assert time.monotonic() - start < 15.0   # at the cancel, not after perception_timeout (30 s)
        assert node.fresh_objects(cancel) is None   # already cancelled: no wait at all
        # a goal whose id was still awaited when the stop came is cancelled, not "unknown object id"
        from test.test_pick_review24 import pick_goal

        outcome = node.run_goal(pick_goal(object_id=99), SimpleNamespace(publish_feedback=lambda f: None), cancel)
        assert outcome.message == "cancelled before the pick started; the arm did not move"
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_grounding_node_says_the_object_was_already_down(goal_node):  # noqa: F811
    from koba_ros.nodes.grounding_node import CANCELLED_REPLY, PLACED_BEFORE_STOP

    node, said = goal_node
    for success, reply in ((True, f"{CANCELLED_REPLY} {PLACED_BEFORE_STOP}"), (False, CANCELLED_REPLY)):
        handle = _Handle()
        handle.result_future = _Future(SimpleNamespace(status=5, result=SimpleNamespace(success=success,
                                                                                        message="")))
        node.on_goal_response(_Future(handle), node.contact_lost)
        handle.result_future.callbacks[0](handle.result_future)
        assert said[-1] == reply


def test_a_stop_after_a_miss_is_a_cancelled_pick_not_a_failed_search(kinematics):  # noqa: F811
    class MissingArm(CancellingArm):
        def gripper(self, width, cancel):
            super().gripper(width, cancel)
            return width   # the fingers close on nothing

    cancel, looked = threading.Event(), []
    arm = MissingArm(cancel, lambda a: len(a.trajectories) == 3)   # approach, descend, then the lift after the miss
    result = Picker(arm, kinematics).pick_place(CUBE, "top_right", cancel=cancel,
                                                locate=lambda target: looked.append(target))
    assert not result.success and result.message == "cancelled after the object was missed; the arm stopped"
    assert looked == []   # no look for the object after the stop


def test_a_stop_that_keeps_the_opening_from_being_sent_is_no_release(kinematics):  # noqa: F811
    """A review's race: the cancel lands after the picker's own check and before the arm's, which then sends nothing
    (TopicArm.gripper returns the fingers' width at once). The object is still held: no "placed"."""
    class LateCancel(threading.Event):
        armed = False

        def is_set(self):   # another thread raises the flag right after this read
            was = super().is_set()
            if self.armed and not was:
                self.armed = False
                self.set()
            return was

    class HoldingArm(RecordingArm):
        """Fingers that only move when a command is sent, as over topics."""

        def __init__(self, cancel):
            super().__init__()
            self.cancel, self.width, self.sent = cancel, MAX_OPENING, []

        def execute(self, traj, cancel):
            done = super().execute(traj, cancel)
            if len(self.trajectories) == 5:   # approach, descend, lift, transfer, lower
                self.cancel.armed = True
            return done

        def gripper(self, width, cancel):
            if cancel.is_set():
                return self.width
            self.sent.append(width)
            self.width = max(width, 0.03)   # closing stops on the 3 cm cube
            return self.width

    cancel = LateCancel()
    arm = HoldingArm(cancel)
    result = Picker(arm, kinematics).pick_place(CUBE, "top_right", cancel=cancel)
    assert not result.success and result.message == "cancelled; the arm stopped", result
    assert arm.sent[-1] == 0.0   # the last command sent closed the fingers: it is still held
