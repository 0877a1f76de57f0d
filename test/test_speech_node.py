"""speech_node over DDS: audio on /audio → Utterance on /speech/utterance; a bad source fails configure in one line."""
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
GOFORWARD = Path("/usr/share/pocketsphinx/test/data/goforward.raw")


@pytest.mark.skipif(not GOFORWARD.is_file(), reason="needs Debian pocketsphinx-testdata (setup.sh installs it)")
def test_audio_topic_to_utterance(ros_context):
    import rclpy
    from koba_interfaces.msg import Utterance
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import Int16MultiArray

    from koba_ros.nodes.runtime import autostart
    from koba_ros.nodes.speech_node import SpeechNode
    from koba_ros.speech.audio import load_audio

    speech = SpeechNode(context=ros_context, parameter_overrides=[Parameter("sample_rate", value=22050)])
    autostart(speech)
    probe = Node("probe", context=ros_context)
    heard = []
    probe.create_subscription(Utterance, "/speech/utterance", heard.append, 10)
    audio = probe.create_publisher(Int16MultiArray, "/audio", 50)
    executor = MultiThreadedExecutor(context=ros_context)
    executor.add_node(speech)
    executor.add_node(probe)
    # Sent at 22.05 kHz to exercise the topic's resampling too.
    from scipy.signal import resample_poly

    samples = resample_poly(np.concatenate([load_audio(GOFORWARD), np.zeros(16000, np.int16)]), 441, 320)
    samples = np.clip(samples, -32768, 32767).astype(np.int16)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and probe.count_subscribers("/audio") == 0:
            executor.spin_once(timeout_sec=0.05)
        for i in range(0, len(samples), 2205):   # 100 ms messages
            audio.publish(Int16MultiArray(data=samples[i:i + 2205].tolist()))
            for _ in range(3):
                executor.spin_once(timeout_sec=0.01)
        end = time.monotonic() + 20
        while time.monotonic() < end and not heard:
            executor.spin_once(timeout_sec=0.05)
        assert [m.text for m in heard] == ["go forward ten meters"]
        assert heard[0].backend == "pocketsphinx" and heard[0].audio_duration > 1.0 and heard[0].latency >= 0
    finally:
        executor.shutdown()
        speech.trigger_deactivate()
        speech.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=ros_context)


def test_missing_file_fails_configure_in_one_line(ros_context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.speech_node import SpeechNode

    node = SpeechNode(context=ros_context, parameter_overrides=[Parameter("source", value="file"),
                                                                Parameter("wav_file", value="/no/such.wav")])
    try:
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert node.failure == "no such audio file: /no/such.wav"
    finally:
        node.destroy_node()
