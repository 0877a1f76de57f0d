"""grounding_node's stop path over real DDS (the node in this process with the real model, so a grounding turn can
be held open): a "stop" is heard while a turn is still running and voids it; a "stop" between sending the PickPlace
goal and the server accepting it is not read as an instruction, and the goal is cancelled as soon as it is accepted."""
import threading
import time

import pytest
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from koba_ros.nodes.executor import QueueOnceExecutor
from test.rostools import wait_for
from test.test_grounding_node import perceived_scene

pytestmark = pytest.mark.ros
WAIT = 60.0   # generous: the machine may be very busy


class GatedGrounder:
    """The real grounder, but a turn waits at the gate (while it is closed) so the test can speak mid-turn."""

    def __init__(self, grounder):
        self.grounder, self.gate, self.inside = grounder, threading.Event(), threading.Event()
        self.gate.set()

    def ground_batch(self, texts, object_lists):
        self.inside.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return self.grounder.ground_batch(texts, object_lists)

    def ground(self, text, objects):
        return self.ground_batch([text], [objects])[0]


def test_stop_mid_turn_and_between_goal_and_acceptance(ros_context):
    from koba_interfaces.action import PickPlace
    from koba_interfaces.msg import DetectedObjectArray, GroundingResult
    from std_msgs.msg import String

    from koba_ros.nodes.grounding_node import GroundingNode
    from koba_ros.nodes.runtime import autostart
    from koba_ros.perception.messages import objects_to_msg

    objects = perceived_scene()
    node = GroundingNode(context=ros_context)
    autostart(node)                                   # loads the model
    gated = node.grounder = GatedGrounder(node.grounder)
    client = Node("stop_test_client", context=ros_context)
    said, results, goals = [], [], []
    accept, cancelled = threading.Event(), threading.Event()

    def on_goal(request):
        goals.append(request)
        accept.wait(WAIT)                             # hold the goal between "sent" and "accepted"
        return GoalResponse.ACCEPT

    def execute(handle):
        if wait_for(lambda: handle.is_cancel_requested):
            cancelled.set()
            handle.canceled()
            return PickPlace.Result(success=False, message="cancelled")
        handle.succeed()
        return PickPlace.Result(success=True, message="ok")

    group = ReentrantCallbackGroup()
    ActionServer(client, PickPlace, "pick_place", execute, goal_callback=on_goal,
                 cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group)
    client.create_subscription(String, "/speech/say", lambda m: said.append(m.data), 10, callback_group=group)
    client.create_subscription(GroundingResult, "/grounding/result", results.append, 10, callback_group=group)
    objects_pub = client.create_publisher(DetectedObjectArray, "/perception/objects", 10)
    text_pub = client.create_publisher(String, "/instruction", 10)
    executor = QueueOnceExecutor(num_threads=6, context=ros_context)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert wait_for(lambda: text_pub.get_subscription_count() >= 2 and objects_pub.get_subscription_count() > 0), \
            "grounding_node never subscribed"
        assert wait_for(lambda: node.action.server_is_ready()), "the test's PickPlace server was never seen"
        for _ in range(30):                           # publish until the node has them (discovery may lag)
            objects_pub.publish(objects_to_msg(objects, client.get_clock().now().to_msg()))
            if wait_for(lambda: node.objects, 1.0):
                break
        assert node.objects, "objects never arrived"

        # 1. A stop while the turn is still grounding: answered at once, and the turn's outcome is dropped.
        gated.gate.clear()
        text_pub.publish(String(data="put the duck in the top right box"))
        assert wait_for(gated.inside.is_set), "the turn never started"
        text_pub.publish(String(data="stop"))
        assert wait_for(lambda: "Okay, I won't move anything." in said), said
        assert not gated.gate.is_set(), "the stop was answered only after the turn"
        gated.gate.set()
        assert wait_for(lambda: not node.turn_running), "the held turn never finished"
        time.sleep(1.0)                               # let anything the turn might still publish arrive
        assert not goals and all(r.instruction == "stop" for r in results), [r.instruction for r in results]
        assert results and results[-1].status == GroundingResult.REJECTED

        # 2. A stop after the goal is sent but before it is accepted.
        text_pub.publish(String(data="put the duck in the top right box"))
        assert wait_for(lambda: goals), f"no goal; said {said}"
        # The turn's result travels on a topic, the goal on the action's service: wait for both before counting.
        assert wait_for(lambda: results[-1].status == GroundingResult.RESOLVED), [r.status for r in results]
        n_results = len(results)
        text_pub.publish(String(data="stop"))
        assert wait_for(lambda: "Holding still." in said), said
        accept.set()
        assert wait_for(cancelled.is_set), "the goal was not cancelled once accepted"
        assert wait_for(lambda: "Move cancelled." in said), said
        assert len(results) == n_results and len(goals) == 1   # "stop" was not read as an instruction
    finally:
        accept.set()
        gated.gate.set()
        executor.shutdown(timeout_sec=5)
        client.destroy_node()
        node.destroy_node()
