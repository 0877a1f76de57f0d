"""face_feedback_node over real DDS: camera frames in, stamped HumanFeedback out; no camera is a clear failure."""
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.time import Time

from test.rostools import spin_until, start_process, stop_process

pytestmark = pytest.mark.ros


def image_msg(rgb: np.ndarray, stamp_s: float):
    from sensor_msgs.msg import Image

    from koba_ros.face.frames import rgb_to_image_fields

    msg = Image(**rgb_to_image_fields(rgb))
    msg.header.stamp = Time(nanoseconds=round(stamp_s * 1e9)).to_msg()
    msg.header.frame_id = "test_camera"
    return msg


def test_astronaut_on_a_camera_topic_gives_positive_feedback_stamped_at_onset(ros_context):
    from koba_interfaces.msg import HumanFeedback
    from sensor_msgs.msg import Image

    from koba_ros.face import samples

    proc = start_process("-m", "koba_ros.nodes.face_feedback_node", "--ros-args", "-p", "source:=topic",
                         "-p", "image_topic:=/test/camera", "-p", "reliability:=reliable",
                         "-p", "calibration_s:=0.0")
    node = Node("face_test", context=ros_context)
    try:
        feedback, debug = [], []
        node.create_subscription(HumanFeedback, "/human_feedback", feedback.append, 10)
        node.create_subscription(Image, "/face/debug_image", debug.append, 2)
        camera = node.create_publisher(Image, "/test/camera", 10)
        assert spin_until(node, lambda: camera.get_subscription_count() > 0, 30), "face_feedback_node never subscribed"
        rest, smile = samples.on_canvas(samples.grace_hopper()), samples.on_canvas(samples.astronaut())
        base = 1000.0  # the camera's clock: stamps in the feedback must come from the frames
        for i, frame in enumerate([rest] * 5 + [smile] * 10):
            camera.publish(image_msg(frame, base + i * 0.1))
            spin_until(node, lambda: False, 0.1)  # ~10 fps, and let the node keep up
        assert spin_until(node, lambda: feedback and debug, 20), "no feedback"
        assert len(feedback) == 1
        msg = feedback[0]
        assert msg.source == "face" and msg.value == 1.0 and 0.5 < msg.confidence <= 1.0
        onset = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        assert base + 0.5 - 1e-6 <= onset <= base + 0.7 + 1e-6  # the smile's first frames, not "now"
        assert (debug[-1].height, debug[-1].width, debug[-1].encoding) == (480, 640, "rgb8")
    finally:
        node.destroy_node()
        assert stop_process(proc) == 0, proc.stdout.read()


def test_without_a_camera_the_node_says_so_and_suggests_other_feedback():
    proc = start_process("-m", "koba_ros.nodes.face_feedback_node", "--ros-args", "-p", "source:=webcam",
                         "-p", "webcam_device:=/dev/koba_no_such_camera")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "no camera" in out and "feedback:=keyboard" in out and "Traceback" not in out
