"""grounding_node over real DDS: objects + a typed instruction -> a question on /speech/say, a spoken answer ->
a PickPlace goal for the right object; "stop" cancels the running goal; an absent object is refused."""
import threading
import time
from types import SimpleNamespace

import pytest
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from koba_ros.nodes.executor import QueueOnceExecutor
from test.rostools import spin_until, start_process, stop_process

pytestmark = pytest.mark.ros

SCENE = {"seed": 3, "objects": [
    {"name": "red_cube", "box": "top_left", "xy": [0.0, 0.0]},
    {"name": "red_cube", "box": "bottom_left", "xy": [0.0, 0.0]},
    {"name": "duck", "box": "top_right", "xy": [0.0, 0.0]},
    {"name": "blue_ball", "box": "bottom_right", "xy": [0.03, 0.0]}]}


def perceived_scene():
    from koba_ros.perception.segmenter import perceive
    from koba_ros.sim.cell import SimCell
    from koba_ros.sim.scene import parse_scene

    with SimCell(parse_scene(SCENE)) as cell:
        frame = cell.render()
    return perceive(frame.rgb, frame.depth, frame.K, frame.camera_pose)


def test_question_answer_goal_cancel_and_refusal(ros_context):
    from koba_interfaces.action import PickPlace
    from koba_interfaces.msg import DetectedObjectArray, GroundingResult, SpeakingState, Utterance
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    from koba_ros.perception.messages import objects_to_msg

    objects = perceived_scene()
    red_bottom = next(o.id for o in objects if o.box == "bottom_left")
    proc = start_process("-m", "koba_ros.nodes.grounding_node")
    node = Node("grounding_test", context=ros_context)
    said, results, goals, cancelled = [], [], [], threading.Event()

    def execute(handle):
        goals.append(handle.request)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not handle.is_cancel_requested:
            time.sleep(0.05)
        if handle.is_cancel_requested:
            cancelled.set()
            handle.canceled()
            return PickPlace.Result(success=False, message="cancelled")
        handle.succeed()
        return PickPlace.Result(success=True, message="ok")

    group = ReentrantCallbackGroup()
    ActionServer(node, PickPlace, "pick_place", execute, cancel_callback=lambda _: CancelResponse.ACCEPT,
                 callback_group=group)
    node.create_subscription(String, "/speech/say", lambda m: said.append(m.data), 10)
    node.create_subscription(GroundingResult, "/grounding/result", results.append, 10)
    objects_pub = node.create_publisher(DetectedObjectArray, "/perception/objects", 10)
    text_pub = node.create_publisher(String, "/instruction", 10)
    speech_pub = node.create_publisher(Utterance, "/speech/utterance", 10)
    speaking_pub = node.create_publisher(SpeakingState, "/speech/speaking",
                                         QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    executor = QueueOnceExecutor(num_threads=3, context=ros_context)
    try:
        assert spin_until(node, lambda: text_pub.get_subscription_count() > 0 and
                          objects_pub.get_subscription_count() > 0, 90, executor), "grounding_node never subscribed"
        objects_pub.publish(objects_to_msg(objects, node.get_clock().now().to_msg()))
        spin_until(node, lambda: False, 0.5, executor)

        text_pub.publish(String(data="put the red cube in the top right box"))
        # The question on /speech/say and the result on /grounding/result are two topics: wait for both.
        assert spin_until(node, lambda: results and said, 30, executor), f"result {results}, said {said}"
        assert results[-1].status == GroundingResult.CLARIFY, said
        assert "top left" in said[-1] and "bottom left" in said[-1], said[-1]

        # A spoken "stop" while the robot talks and nothing moves may be its own voice ("top left" sounds like
        # "stop"): the question stays open.
        speaking_pub.publish(SpeakingState(speaking=True, text=said[-1]))
        spin_until(node, lambda: False, 0.5, executor)
        speech_pub.publish(Utterance(text="stop", confidence=1.0))
        spin_until(node, lambda: False, 1.0, executor)
        assert not any("won't move" in s for s in said), said

        speech_pub.publish(Utterance(text="the one in the bottom left box", confidence=0.9))
        assert spin_until(node, lambda: goals, 30, executor), f"no goal; said {said}"
        # The result travels on a topic, the goal on the action's service: either may arrive first.
        assert spin_until(node, lambda: results[-1].status == GroundingResult.RESOLVED, 30, executor), said
        assert results[-1].target_id == red_bottom
        assert goals[0].object_id == red_bottom and goals[0].destination == "top_right"

        # While something moves, a spoken "stop" over the robot's voice wins like any other.
        speech_pub.publish(Utterance(text="stop", confidence=1.0))
        assert spin_until(node, cancelled.is_set, 20, executor), "the goal was not cancelled"
        assert spin_until(node, lambda: "Holding still." in said, 10, executor)
        speaking_pub.publish(SpeakingState(speaking=False))

        n_goals = len(goals)
        text_pub.publish(String(data="put the green duck in the top left box"))
        assert spin_until(node, lambda: results[-1].status == GroundingResult.REJECTED, 30, executor), said
        spin_until(node, lambda: False, 1.0, executor)
        assert len(goals) == n_goals
    finally:
        node.destroy_node()
        assert stop_process(proc) == 0, proc.stdout.read()


def test_a_bad_objects_message_or_a_failing_turn_leaves_the_node_as_it_was(ros_context):
    """In-process handlers: a malformed DetectedObject used to raise in the subscription callback (the executor
    re-raised it and the process exited); an unexpected failure in a turn did the same."""
    from koba_ros.nodes.grounding_node import GroundingNode
    from koba_ros.perception.messages import objects_to_msg
    from koba_ros.perception.objects import PerceivedObject

    node = GroundingNode(context=ros_context)
    try:
        cube = PerceivedObject(id=1, bbox=(1, 2, 3, 4), position=(0.5, 0.1, 0.03), size=(0.04, 0.05, 0.06),
                               box="top_left", mean_rgb=(0.8, 0.1, 0.1))
        node.on_objects(objects_to_msg([cube], node.get_clock().now().to_msg()))
        before = node.objects
        assert [o.id for o in before] == [1]
        bad = objects_to_msg([cube], node.get_clock().now().to_msg())
        bad.objects[0].attributes = ["mean_rgb:abc"]
        node.on_objects(bad)
        assert node.objects is before

        said = []
        node.say = said.append

        def broken(text, stops):
            raise ValueError("setting an array element with a sequence")

        node.respond = broken
        node.on_text("put the red cube in the top right box")
        assert said == ["Sorry, that did not work; please try again."] and not node.turn_running
    finally:
        node.destroy_node()


def test_a_question_left_unanswered_expires_and_what_is_said_next_is_a_new_instruction(ros_context, monkeypatch):
    """An open question used to wait forever, so an instruction given minutes later was read as its answer."""
    import numpy as np

    from koba_ros.grounding.dialogue import Dialogue
    from koba_ros.grounding.synthetic import perceive_synthetic
    from koba_ros.nodes import grounding_node
    from test.test_grounding_core import TableGrounder

    node = grounding_node.GroundingNode(context=ros_context)
    try:
        node.objects = perceive_synthetic([{"name": "duck", "box": "top_left", "xy": [0.0, 0.0]},
                                           {"name": "blue_ball", "box": "bottom_right", "xy": [0.0, 0.0]}],
                                          np.random.default_rng(0))
        node.grounder = TableGrounder({"the duck": ([0.5, 0.5, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]),
                                       "the ball to the top right box": ([0.0, 0.99, 0.01], [0, 1, 0, 0, 0])},
                                      2, ["duck", "ball"])
        said, goals = [], []
        monkeypatch.setattr(node, "say", said.append)
        monkeypatch.setattr(node, "publish_result", lambda *args: None)
        monkeypatch.setattr(node, "send_goal", lambda obj, box: goals.append(box))
        node.action = SimpleNamespace(server_is_ready=lambda: True)   # a move is announced only with an arm there
        node.respond("the duck", node.stops)
        assert isinstance(node.dialogue, Dialogue) and node.dialogue.pending
        node.asked_at -= node.question_timeout + 1   # a minute and more later
        node.respond("the ball to the top right box", node.stops)
        assert goals == ["top_right"] and node.dialogue is None
    finally:
        node.destroy_node()
