"""teleop_node over DDS: utterances in, JointTrajectory / gripper / spoken replies out; stop is an empty trajectory."""
import time

import pytest

pytestmark = pytest.mark.ros


def test_teleop_node_topics(ros_context):
    import rclpy
    from koba_interfaces.msg import Utterance
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64, String
    from trajectory_msgs.msg import JointTrajectory

    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.runtime import shutdown_executor
    from koba_ros.nodes.teleop_node import TeleopNode
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    teleop = TeleopNode(context=ros_context)
    probe = Node("probe", context=ros_context)
    got = {"traj": [], "say": [], "grip": []}
    listeners = [
        probe.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", got["traj"].append, 10),
        probe.create_subscription(String, "/speech/say", lambda m: got["say"].append(m.data), 10),
        probe.create_subscription(Float64, "/gripper/command", lambda m: got["grip"].append(m.data), 10)]
    joints = probe.create_publisher(JointState, "/joint_states", 10)
    words = probe.create_publisher(Utterance, "/speech/utterance", 10)
    executor = QueueOnceExecutor(context=ros_context)
    executor.add_node(teleop)
    executor.add_node(probe)

    def arm_now():   # an arm that gets at once to the end of the last trajectory sent (a jog's reply checks it)
        sent = [traj for traj in got["traj"] if traj.points]
        return list(sent[-1].points[-1].positions) if sent else list(HOME)

    def spin_until(check, timeout=15.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not check():
            joints.publish(JointState(name=list(ARM_JOINTS), position=arm_now()))
            executor.spin_once(timeout_sec=0.05)
        return check()

    try:
        # Matched in both directions (a graph count alone does not mean DDS has matched the endpoints yet).
        assert spin_until(lambda: teleop.joints is not None and words.get_subscription_count() > 0
                          and all(sub.get_publisher_count() > 0 for sub in listeners), timeout=60.0)
        words.publish(Utterance(text="move left five centimeters", confidence=0.9, backend="pocketsphinx"))
        assert spin_until(lambda: len(got["traj"]) == 1)
        assert len(got["traj"][0].points) > 1 and list(got["traj"][0].joint_names) == list(ARM_JOINTS)
        # The reply waits for the motion's end (the robot talking over a jog would leave no time to stop it by
        # voice); a stop during the motion drops it.
        assert "Moved left 5 centimeters." not in got["say"]
        words.publish(Utterance(text="stop", confidence=0.9))
        assert spin_until(lambda: len(got["traj"]) == 2)
        assert got["traj"][1].points == []                       # empty trajectory: the controller holds
        assert spin_until(lambda: "Holding still." in got["say"])
        spin_until(lambda: False, timeout=1.5)                   # past the end of the jog that was stopped
        assert not any(text.startswith("Moved") for text in got["say"]), got["say"]
        words.publish(Utterance(text="move up two centimeters", confidence=0.9))
        assert spin_until(lambda: len(got["traj"]) == 3)
        # A refused command during the jog replaces nothing: the jog is still reported, and the refusal waits for
        # the motion's end too (the robot says nothing while the arm moves).
        words.publish(Utterance(text="go forward ten meters", confidence=0.9))
        assert spin_until(lambda: "Moved up 2 centimeters." in got["say"] and
                          "That is out of my reach." in got["say"]), got["say"]
        words.publish(Utterance(text="close the gripper", confidence=0.9))
        assert spin_until(lambda: got["grip"] == [0.0])
        words.publish(Utterance(text="open the gripper", confidence=0.1))   # too unsure: ignored
        spin_until(lambda: False, timeout=0.5)
        assert got["grip"] == [0.0] and len(got["traj"]) == 3
        words.publish(Utterance(text="stop", confidence=0.02))   # a quiet stop: obeyed whatever its confidence
        assert spin_until(lambda: len(got["traj"]) == 4)
        assert got["traj"][3].points == []
    finally:
        shutdown_executor(executor)
        teleop.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=ros_context)


def test_a_stop_during_a_jogs_publish_wins_and_nan_joint_states_move_nothing(ros_context, monkeypatch):
    """A stop that lands between a jog's generation check and its publish used to be overtaken by the jog: the arm
    moved after the stop reply. Joint states with NaN used to become a NaN "go home" trajectory."""
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said = [], []
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", said.append)
    real = teleop_node.trajectory_to_msg

    def stop_meanwhile(traj):  # "stop" heard on another callback thread while the jog's message is built
        node.run_command("stop")
        return real(traj)

    monkeypatch.setattr(teleop_node, "trajectory_to_msg", stop_meanwhile)
    try:
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        node.run_command("move up five centimeters")
        assert sent == [0] and said == ["Holding still."]  # only the empty trajectory: the jog was dropped
        monkeypatch.setattr(teleop_node, "trajectory_to_msg", real)
        node.on_joints(JointState(name=list(ARM_JOINTS), position=[float("nan")] + list(HOME[1:])))
        node.run_command("go home")
        assert sent == [0] and said[-1] == "I do not know where my arm is yet."
    finally:
        node.destroy_node()


def test_no_move_is_planned_from_joint_states_that_stopped(ros_context, monkeypatch):
    """The arm may have moved since the last /joint_states (another node moved it, the driver died): a jog planned
    from a stale pose used to be sent as if it were current."""
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said, clock = [], [], [100.0]
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", said.append)
    monkeypatch.setattr(node, "say_when_still", lambda text, *_: said.append(text))
    monkeypatch.setattr(teleop_node.time, "monotonic", lambda: clock[0])
    try:
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        clock[0] += node.state_timeout + 0.5
        node.run_command("move up five centimeters")
        assert sent == [] and said == [teleop_node.STALE_STATES]
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))   # fresh again: it moves
        node.run_command("move up five centimeters")
        assert len(sent) == 1 and sent[0] > 1 and said[-1] == "Moved up 5 centimeters."
        node.run_command("stop")                                            # a stop needs no joint states
        assert sent[-1] == 0
    finally:
        node.destroy_node()
