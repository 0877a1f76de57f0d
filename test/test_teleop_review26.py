"""teleop_node takes commands in the order they arrive and plans moves on a worker thread (session 26): with the
command callbacks side by side on the pool, a jog whose thread started late could take a newer place than a stop
said after it and move the arm after the stop."""
import threading

import pytest

pytestmark = pytest.mark.ros


def test_a_stop_said_while_a_jog_is_planned_is_obeyed_at_once_and_the_jog_is_dropped(ros_context, monkeypatch):
    from koba_interfaces.msg import Utterance
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said, release = [], [], threading.Event()
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", said.append)
    real_plan = node.planner.plan

    def slow_plan(*args):   # IK under load
        release.wait(10)
        return real_plan(*args)

    monkeypatch.setattr(node.planner, "plan", slow_plan)
    try:
        # the commands' subscriptions run one callback at a time, in arrival order
        groups = {sub.topic_name: sub.callback_group for sub in node.subscriptions}
        assert isinstance(groups["/speech/utterance"], MutuallyExclusiveCallbackGroup)
        assert groups["/speech/utterance"] is groups["/teleop/command"]
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        callback = threading.Thread(target=node.on_utterance,
                                    args=(Utterance(text="move up five centimeters", confidence=0.9),))
        callback.start()
        callback.join(2.0)
        assert not callback.is_alive()   # the jog's callback took its place and left the plan to the worker
        node.on_utterance(Utterance(text="stop", confidence=0.9))
        assert sent == [0] and said == ["Holding still."]   # held at once, not after the plan
        release.set()
        node.planning.shutdown(wait=True)
        assert sent == [0]   # the plan finished after the stop and was dropped
    finally:
        release.set()
        node.destroy_node()


def test_typed_commands_still_move_and_a_failing_plan_is_one_logged_line(ros_context, monkeypatch):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said = [], []
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "say_when_still", lambda text, *_: said.append(text))
    try:
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        typed = [sub for sub in node.subscriptions if sub.topic_name == "/teleop/command"][0]
        typed.callback(String(data="move up five centimeters"))
        node.planning.submit(lambda: None).result(10)   # that plan is done
        monkeypatch.setattr(node.planner, "plan", lambda *a: 1 / 0)
        typed.callback(String(data="move up five centimeters"))
        node.planning.shutdown(wait=True)
        assert len(sent) == 1 and sent[0] > 1
        assert said == ["Moved up 5 centimeters.", teleop_node.FAILED]
    finally:
        node.destroy_node()


def test_jogs_superseded_while_waiting_for_the_planner_are_never_planned(ros_context, monkeypatch):
    """Found by a review: the generation check came after the IK, so a queue of superseded jogs delayed the newest."""
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, planned, release = [], [], threading.Event()
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", lambda text: None)
    real_plan = node.planner.plan

    def plan(command, joints, *fingers):   # the fingers' width and target (session 30)
        planned.append(command.words)
        release.wait(10)
        return real_plan(command, joints, *fingers)

    monkeypatch.setattr(node.planner, "plan", plan)
    try:
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        for text in ("move up one centimeter", "move up two centimeters", "move up three centimeters",
                     "move up four centimeters"):
            node.run_command(text, plan_later=True)
        release.set()
        node.planning.shutdown(wait=True)
        assert planned == ["up 1 centimeter", "up 4 centimeters"] and len(sent) == 1, planned
    finally:
        release.set()
        node.destroy_node()
