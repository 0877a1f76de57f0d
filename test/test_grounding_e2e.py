"""End to end over DDS with only std_msgs: `koba up picking --headless` in a child process; this client types
instructions on /instruction, hears the robot on /speech/say, answers its question, and hears how the pick ended."""
import subprocess
import sys

import pytest
from rclpy.node import Node

from test.rostools import spin_until, stop_process

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_plain_std_msgs_client_drives_a_pick_with_a_question(ros_context, tmp_path):
    from std_msgs.msg import String

    log = open(tmp_path / "graph.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "koba_ros.cli", "up", "picking", "--headless", "--duration",
                             "280", "--arg", f"tts_output_wav:={tmp_path / 'say.wav'}"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    node = Node("plain_client", context=ros_context)
    said = []
    node.create_subscription(String, "/speech/say", lambda m: said.append(m.data), 10)
    pub = node.create_publisher(String, "/instruction", 10)
    try:
        # grounding_node itself, not merely a subscriber: tts_node listens to /instruction too (for a typed "stop")
        assert spin_until(node, lambda: any(info.node_name == "grounding_node"
                                            for info in node.get_subscriptions_info_by_topic("/instruction")), 120), \
            "grounding_node never came up"
        spin_until(node, lambda: False, 5.0)   # let perception publish the objects
        pub.publish(String(data="put the teddy bear in the top right box"))   # two bears in sim/scenes/demo.json
        assert spin_until(node, lambda: any(s.startswith("Do you mean") for s in said), 60), said
        pub.publish(String(data="the one in the bottom left box"))
        resolved = "from the bottom left box to the top right box"
        assert spin_until(node, lambda: any(resolved in s for s in said), 30), said
        # The goal went to picker_node; whether the grasp holds is the picker's business (a slip is reported as
        # "I couldn't finish: ..."), the client must hear the outcome either way.
        assert spin_until(node, lambda: "Done." in said or any(s.startswith("I couldn't") for s in said), 150), said
    finally:
        node.destroy_node()
        stop_process(proc, timeout=20)
        log.close()
