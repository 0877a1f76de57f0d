"""trajectory_msgs/JointTrajectory <-> koba_ros.sim.trajectory.JointTrajectory, for every node on the arm topic.

One place for the conversion so the producers (picker_node, teleop_node) and the follower (sim_node) agree on
time encoding: time_from_start as whole seconds + nanoseconds, positions one per joint name.
"""
from __future__ import annotations

from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg
from trajectory_msgs.msg import JointTrajectoryPoint

from koba_ros.errors import KobaError
from koba_ros.sim.trajectory import JointTrajectory


def seconds_to_duration(t: float) -> Duration:
    sec, nanosec = divmod(round(t * 1e9), 1_000_000_000)  # rounded, not truncated: 0.3 s stays 0.3 s
    return Duration(sec=int(sec), nanosec=int(nanosec))


def trajectory_to_msg(traj: JointTrajectory) -> JointTrajectoryMsg:
    msg = JointTrajectoryMsg(joint_names=list(traj.joint_names))
    for t, q in zip(traj.times, traj.positions, strict=True):
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in q],
                                               time_from_start=seconds_to_duration(float(t))))
    return msg


def trajectory_from_msg(msg: JointTrajectoryMsg) -> JointTrajectory:
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    positions = [list(p.positions) for p in msg.points]
    if any(len(p) != len(msg.joint_names) for p in positions):
        raise KobaError("every trajectory point needs one position per joint name")
    return JointTrajectory.make(msg.joint_names, times, positions)
