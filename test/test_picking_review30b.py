"""Session 30 review of the pick-and-place path, part B: IK and a quaternion off unit length, objects larger than a box
holds, the join to a plan's first waypoint, vectors of the wrong length, trajectories lasting for ever, and the open
finger's reach kept once. Each test fails on the code before its fix."""
import threading
import time

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.picking.kinematics import ARM_JOINTS, PandaKinematics, top_down
from koba_ros.picking.picker import HOME, MAX_OPENING, Picker, Target
from koba_ros.sim.layout import box_regions
from koba_ros.sim.trajectory import MAX_DURATION, JointTrajectory, validate

TOP_RIGHT = box_regions()["top_right"]


class RecordingArm:
    """Executes instantly, remembering where it was and what it was sent."""

    def __init__(self, q=HOME):
        self.q = np.array(q, dtype=np.float64)
        self.sent = []

    def joint_positions(self):
        return self.q.copy()

    def execute(self, traj, cancel):
        self.sent.append((self.q.copy(), traj))
        self.q = traj.positions[-1].copy()
        return True

    def gripper(self, width, cancel):
        return max(width, 0.03)   # holding something 3 cm wide


@pytest.fixture(scope="module")
def kinematics():
    kin = PandaKinematics()
    yield kin
    kin.close()


def test_ik_refuses_a_quaternion_off_unit_length_at_once(kinematics):
    """A zero quaternion hung PyBullet's IK for ever holding the GIL (every thread, a stop included, froze), and a
    non-unit one was accepted whatever the tool did: |dot| >= 0.995 holds for any long quaternion. The cases that
    hang come last, so the old code fails on the first ones instead of hanging."""
    for bad in ((1e300, 0, 0, 0), (3, 0.2, 0, 0), (0, 0, 0, 5), (0, 0, 0, 0), (1e-300, 0, 0, 0)):
        start = time.perf_counter()
        with pytest.raises(KobaError, match=r"^IK needs a unit quaternion \(xyzw\), got .* \(norm [^)]*\)$"):
            kinematics.ik((0.45, 0.1, 0.2), bad)
        assert time.perf_counter() - start < 0.1
    # within the tolerance the refined IK (session 30, teleop) still lands on the target
    down = np.array(top_down(0.3)) * (1 + 5e-4)
    q = kinematics.ik((0.45, 0.1, 0.2), down)
    assert np.linalg.norm(kinematics.fk(q)[0] - (0.45, 0.1, 0.2)) < 1e-3


def test_an_object_larger_than_a_box_holds_is_refused_in_one_line(kinematics):
    """object_size.z = 1e300 came back as a 300-digit "cannot reach" (IK's .2f), and a size of (0.04, 1e300, 0.04)
    was picked and "placed": only min(x, y) was bounded."""
    centre = (*TOP_RIGHT.centre, 0.03)
    for size, width in (((0.04, 0.04, 1e300), 0.0), ((0.04, 1e300, 0.04), 0.0), ((0.04, 0.04, 0.31), 0.0),
                        ((0.04, 0.04, 0.04), 1e300)):
        arm = RecordingArm()
        message = Picker(arm, kinematics).pick_place(Target(centre, size, 0.0, width), "bottom_left").message
        assert message.startswith("rejected: object is ") and message.endswith(" cm long: over 30 cm, more than a "
                                                                               "box holds"), message
        assert len(message) < 80 and arm.sent == []
    # IK's own refusal: 3 significant digits, not 301
    with pytest.raises(KobaError, match=r"^cannot reach \(1e\+300, 0\.1, 0\.2\) pointing down \(best inf cm off\)$"):
        kinematics.ik((1e300, 0.1, 0.2), top_down(0.0))


def test_an_arm_at_a_plans_start_is_not_joined_to_its_first_waypoint(kinematics):
    """_run joined the arm to the plan's first waypoint, a step along it: an arm exactly at the plan's start got a
    0.4 s move there and then stood still for that step's time (0.25 s) before the plan went on."""
    arm = RecordingArm()
    picker = Picker(arm, kinematics)
    assert picker.pick_place(Target((*TOP_RIGHT.centre, 0.02), (0.04,) * 3, 0.0, 0.04), "bottom_right").success
    for start, traj in arm.sent:
        path = np.vstack([start, traj.positions])
        assert np.all(np.max(np.abs(np.diff(path, axis=0)), axis=1) > 1e-9), "the arm stood still inside a move"
    # an arm away from the start is still joined to it, then follows the plan as planned
    plan = picker.plan_pick(Target((*TOP_RIGHT.centre, 0.02), (0.04,) * 3, 0.0, 0.04), HOME)
    arm.q, arm.sent = np.array(HOME) + 0.05, []
    picker._run(plan["approach"], threading.Event())
    sent = arm.sent[0][1]
    joined = len(sent.times) - len(plan["approach"].times)
    assert joined > 0 and np.allclose(sent.positions[joined - 1], HOME)
    assert np.allclose(np.diff(sent.times[joined - 1:]), np.diff(np.r_[0.0, plan["approach"].times]))


def test_vectors_of_the_wrong_length_are_refused_in_one_line(kinematics):
    """A goal position or size of 2 or 4 numbers raised Python's unpacking errors (Workspace.contains, plan_pick's
    size[2]), and an IK seed of 6 or 9 joints zip()'s."""
    arm = RecordingArm()
    for position, size in (((0.6, -0.12), (0.04,) * 3), ((0.6, -0.12, 0.03, 1.0), (0.04,) * 3),
                           ((0.6, -0.12, 0.03), (0.04, 0.04)), ((0.6, -0.12, 0.03), ())):
        message = Picker(arm, kinematics).pick_place(Target(position, size), "bottom_left").message
        assert message.startswith("rejected: target position and size need 3 numbers each, got "), message
    assert arm.sent == []
    for seed in (np.array(HOME[:6]), np.r_[HOME, 0.0, 0.0]):
        with pytest.raises(KobaError, match=rf"^IK needs a finite .* seed of {len(seed)}$"):
            kinematics.ik((0.45, 0.1, 0.2), top_down(0.0), seed)


def test_a_trajectory_lasting_longer_than_max_duration_is_refused(kinematics):
    """A point at 1e300 s passed: followed, it is a move that never ends."""
    home = np.array(HOME)
    with pytest.raises(KobaError, match=r"^trajectory lasts 1e\+300 s, over 600 s$"):
        validate(JointTrajectory.make(ARM_JOINTS, [1e300], [home + 0.1]), kinematics.limits, home)
    validate(JointTrajectory.make(ARM_JOINTS, [MAX_DURATION], [home + 0.1]), kinematics.limits, home)   # slow: fine


def test_placement_takes_the_open_fingers_reach_from_the_gripper_geometry():
    """placement.py kept its own copy of workspace.FINGER_REACH's 2.7 cm; the clearance is the same number."""
    from koba_ros.picking import placement, workspace

    assert not hasattr(placement, "OPEN_FINGER_REACH")
    assert max(workspace.FINGER_REACH) == 0.027
    assert placement.FINGER_WALL_CLEARANCE == MAX_OPENING / 2 + 0.027 + 0.003 == pytest.approx(0.07)
