"""Real DDS between processes: a std_msgs message, a koba_interfaces message, and an action."""
from pathlib import Path

import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

from test.rostools import spin_until, start_process, stop_process

pytestmark = pytest.mark.ros
PEERS = Path(__file__).parent / "peers"


def test_tts_node_speaks_say_and_reports_speaking_state(ros_context, tmp_path):
    from koba_interfaces.msg import SpeakingState

    wav = tmp_path / "said.wav"
    proc = start_process("-m", "koba_ros.nodes.tts_node", "--ros-args", "-p", f"output_wav:={wav}")
    node = Node("plumbing_test", context=ros_context)
    try:
        states = []
        latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(SpeakingState, "/speech/speaking", states.append, latched)
        say = node.create_publisher(String, "/speech/say", 10)
        assert spin_until(node, lambda: say.get_subscription_count() > 0 and states, 20), "tts_node never appeared"
        say.publish(String(data="the red cube is in the top left box"))
        assert spin_until(node, lambda: any(s.speaking for s in states) and not states[-1].speaking, 20)
        assert any(s.text == "the red cube is in the top left box" for s in states)
        assert wav.stat().st_size > 10000
    finally:
        node.destroy_node()
        code = stop_process(proc)
        assert code == 0, f"tts_node exited with {code}: {proc.stdout.read()[-2000:]}"


def test_pick_place_action_round_trip(ros_context):
    from geometry_msgs.msg import Point
    from koba_interfaces.action import PickPlace

    proc = start_process(str(PEERS / "pick_place_echo_server.py"))
    node = Node("action_test", context=ros_context)
    try:
        client = ActionClient(node, PickPlace, "pick_place")
        assert spin_until(node, client.server_is_ready, 20), "action server never appeared"
        feedback = []
        goal = PickPlace.Goal(object_id=3, pick_position=Point(x=0.5, y=0.1, z=0.05), destination="top_right")
        sent = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback.stage))
        assert spin_until(node, sent.done, 10) and sent.result().accepted
        result = sent.result().get_result_async()
        assert spin_until(node, result.done, 10)
        assert result.result().result.success
        assert result.result().result.message == "object 3 -> top_right"
        assert spin_until(node, lambda: len(feedback) == 5, 5), feedback
        assert feedback[0] == "approach" and feedback[-1] == "release"
        client.destroy()
    finally:
        node.destroy_node()
        stop_process(proc)
