"""picker_node over DDS, without an arm: a goal for an object id this node has not seen yet waits for one fresh
/perception/objects before it is refused, so a client that read the id from perception just before is not refused
only because it was faster than this node's subscription."""
import threading
import time

import pytest

pytestmark = pytest.mark.ros


def test_an_unseen_id_gets_one_fresh_objects_message_before_it_is_refused(ros_context):
    from koba_interfaces.action import PickPlace
    from koba_interfaces.msg import DetectedObjectArray
    from rclpy.action import ActionClient
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.picker_node import PickerNode
    from koba_ros.nodes.runtime import shutdown_executor
    from koba_ros.perception.messages import objects_to_msg
    from koba_ros.perception.objects import PerceivedObject

    picker = PickerNode(context=ros_context, parameter_overrides=[
        Parameter("perception_timeout", value=3.0), Parameter("frame_latency", value=0.2),
        Parameter("joint_state_timeout", value=0.5)])
    probe = Node("picker_probe", context=ros_context)
    objects_pub = probe.create_publisher(DetectedObjectArray, "/perception/objects", 10)
    ids = [1]

    def publish_objects():
        objects = [PerceivedObject(i, (0, 0, 20, 20), (0.5, 0.1 * i, 0.02), (0.04, 0.04, 0.04), "top_left",
                                   (0.5, 0.5, 0.5)) for i in ids]
        objects_pub.publish(objects_to_msg(objects, probe.get_clock().now().to_msg()))

    probe.create_timer(0.1, publish_objects)
    client = ActionClient(probe, PickPlace, "pick_place")
    executor = QueueOnceExecutor(num_threads=4, context=ros_context)
    for node in (picker, probe):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def run_goal(object_id: int, then=None) -> str:
        future = client.send_goal_async(PickPlace.Goal(object_id=object_id, destination="top_right"))
        deadline = time.monotonic() + 20
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert future.done() and future.result().accepted
        if then:
            then()
        result = future.result().get_result_async()
        while not result.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert result.done()
        return result.result().result.message

    try:
        deadline = time.monotonic() + 20
        while not (client.server_is_ready() and picker.objects) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert picker.objects, "the picker never heard /perception/objects"
        message = run_goal(7)  # never perceived: refused, after a fresh message without it
        assert message.startswith("rejected: unknown object id 7"), message
        message = run_goal(8, then=lambda: ids.append(8))  # perceived only after the goal arrived
        assert "unknown object id" not in message, message  # found; it fails later, at the arm (no joint states)
    finally:
        executor.remove_node(picker)
        executor.remove_node(probe)
        shutdown_executor(executor)
        picker.destroy_node()
        probe.destroy_node()


def goal_handle(ended: list):
    """A stand-in for rclpy's ServerGoalHandle of one pick (object 7 to the top right box) that notes how it ends."""
    from types import SimpleNamespace

    from geometry_msgs.msg import Point, Vector3
    from koba_interfaces.action import PickPlace

    return SimpleNamespace(
        goal_id=SimpleNamespace(uuid=list(range(16))), is_cancel_requested=False,
        request=PickPlace.Goal(object_id=7, pick_position=Point(x=0.6, y=0.1, z=0.02),
                               object_size=Vector3(x=0.04, y=0.04, z=0.04), destination="top_right"),
        publish_feedback=lambda feedback: None, canceled=lambda: ended.append("canceled"),
        succeed=lambda: ended.append("succeeded"), abort=lambda: ended.append("aborted"))


def test_a_cancel_that_arrives_before_execute_is_not_lost(ros_context):
    """rclpy runs execute as a task of its own, so a cancel sent right after acceptance (grounding_node does that
    for a "stop" said while its goal was on the way) may be handled first. It used to be accepted and then lost:
    the pick ran to the end."""
    from types import SimpleNamespace

    from rclpy.parameter import Parameter

    from koba_ros.nodes.picker_node import PickerNode

    picker = PickerNode(context=ros_context, parameter_overrides=[Parameter("joint_state_timeout", value=0.3)])
    sent, ended = [], []
    arm = picker.picker.arm
    arm.traj_pub = SimpleNamespace(publish=lambda msg: sent.append("trajectory"))
    arm.grip_pub = SimpleNamespace(publish=lambda msg: sent.append("gripper"))
    handle = goal_handle(ended)
    try:
        picker.on_cancel(handle)       # first, before the goal's execute
        result = picker.execute(handle)
        assert ended == ["canceled"] and not result.success and sent == []
        assert picker.cancels == {}    # nothing left behind for a later goal
    finally:
        picker.destroy_node()
