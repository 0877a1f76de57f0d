"""JointTrajectory <-> trajectory_msgs conversion shared by picker_node, teleop_node and sim_node."""
import numpy as np
import pytest
from trajectory_msgs.msg import JointTrajectoryPoint

from koba_ros.errors import KobaError
from koba_ros.sim.trajectory import JointTrajectory
from koba_ros.sim.trajectory_messages import trajectory_from_msg, trajectory_to_msg

NAMES = ("panda_joint1", "panda_joint2")


def test_round_trip_keeps_names_times_and_positions():
    traj = JointTrajectory.make(NAMES, [0.0, 0.3, 1.25, 2.000000001], [[0, 1], [0.1, 0.9], [0.2, -0.5], [1e-3, 2]])
    msg = trajectory_to_msg(traj)
    assert msg.joint_names == list(NAMES)
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in msg.points] == [
        (0, 0), (0, 300_000_000), (1, 250_000_000), (2, 1)]
    back = trajectory_from_msg(msg)
    assert back.joint_names == NAMES
    np.testing.assert_allclose(back.times, traj.times, atol=1e-9)
    np.testing.assert_array_equal(back.positions, traj.positions)


def test_nanoseconds_never_overflow_a_second():
    msg = trajectory_to_msg(JointTrajectory.make(NAMES, [0.9999999999], [[0, 0]]))
    assert (msg.points[0].time_from_start.sec, msg.points[0].time_from_start.nanosec) == (1, 0)


def test_point_with_wrong_joint_count_is_an_error():
    msg = trajectory_to_msg(JointTrajectory.make(NAMES, [0.5], [[0, 0]]))
    msg.points.append(JointTrajectoryPoint(positions=[1.0]))
    with pytest.raises(KobaError, match="one position per joint"):
        trajectory_from_msg(msg)
