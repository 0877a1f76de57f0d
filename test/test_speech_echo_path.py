"""speech_node's `echo_path_file`: the echo canceller's learnt echo path loaded on configure and saved (periodically
and on cleanup) while converged, so a restarted node cancels the robot's first sentence too. Real rclpy; the robot's
voice is speech-like noise published on /speech/playback, its echo through a synthetic room on /audio."""
import time

import numpy as np
import pytest

from test.test_echo_canceller import echo_of, room, talk, trained

pytestmark = pytest.mark.ros


def node(ros_context, path):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.runtime import autostart
    from koba_ros.nodes.speech_node import SpeechNode

    speech = SpeechNode(context=ros_context, parameter_overrides=[Parameter("echo_path_file", value=str(path))])
    autostart(speech)
    return speech


def test_speech_node_loads_a_kept_echo_path_and_a_bad_file_starts_fresh(ros_context, tmp_path):
    from lifecycle_msgs.msg import State

    earlier = trained()
    earlier.save(tmp_path / "echo_path.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    speech = node(ros_context, tmp_path / "echo_path.npz")
    bad = None
    try:
        assert np.array_equal(speech.canceller.W, earlier.W) and speech.canceller.adapted
        speech.trigger_deactivate()
        speech.trigger_cleanup()
        speech.destroy_node()
        bad = node(ros_context, tmp_path / "bad.npz")       # configure does not fail; the canceller starts fresh
        assert bad._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
        assert bad.canceller is not None and not bad.canceller.W.any()
        assert (tmp_path / "bad.npz").read_bytes() == b"PK\x03\x04 not really a zip"   # not converged: not saved
    finally:
        for n in (speech, bad):
            if n is not None:
                n.destroy_node()


def test_speech_node_saves_the_echo_path_it_learnt_periodically_and_on_cleanup(ros_context, tmp_path):
    from koba_interfaces.msg import AudioChunk
    from rclpy.node import Node

    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.runtime import shutdown_executor
    from koba_ros.speech.echo_canceller import EchoCanceller

    path = tmp_path / "cache" / "echo_path.npz"
    speech = node(ros_context, path)
    speech.echo_path_save_s = 8.0                           # instead of 60 s of audio
    speech.enqueue = lambda samples: None                   # no ASR needed
    probe = Node("probe", context=ros_context)
    playback = probe.create_publisher(AudioChunk, "/speech/playback", 10)
    audio = probe.create_publisher(AudioChunk, "/audio", 50)
    executor = QueueOnceExecutor(context=ros_context)
    for n in (speech, probe):
        executor.add_node(n)

    def spin_until(condition, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            executor.spin_once(timeout_sec=0.05)
        return condition()

    def stamped(samples, t):
        msg = AudioChunk(sample_rate=16000, channels=1, data=samples.tolist())
        msg.header.stamp.sec, msg.header.stamp.nanosec = t // 10**9, t % 10**9
        return msg

    try:
        assert spin_until(lambda: audio.get_subscription_count() and playback.get_subscription_count())
        x = talk(12, 0)
        start = speech.get_clock().now().nanoseconds
        playback.publish(stamped(x, start))
        assert spin_until(lambda: speech.reference.segments)
        mic = np.clip(echo_of(x, room(10)) + np.random.default_rng(0).standard_normal(len(x)) * 20, -32768,
                      32767).astype(np.int16)
        for i in range(0, len(mic), 1600):
            audio.publish(stamped(mic[i:i + 1600], start + i * 10**9 // 16000))
            executor.spin_once(timeout_sec=0.01)
        canceller = speech.canceller
        assert spin_until(lambda: canceller.blocks * canceller.block >= len(mic) - 1600)
        assert canceller.converged
        assert path.exists(), "not saved after 8 s of audio while converged"     # so that a crash keeps it
        periodic = EchoCanceller()
        periodic.load(path)
        assert periodic.adapted and periodic.W.any()
        speech.trigger_deactivate()
        speech.trigger_cleanup()                                                 # saved again: the latest path
        kept = EchoCanceller()
        kept.load(path)
        assert np.array_equal(kept.W, canceller.W)
    finally:
        shutdown_executor(executor)
        for n in (speech, probe):
            n.destroy_node()
