"""Echo cancellation wired through ROS (session 25): tts_node publishes what it plays on /speech/playback, and
speech_node subtracts its echo from the /audio it hears, lined up by the messages' stamps."""
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros
TEXT = "Okay, I'll move the brown teddy bear from the top left box to the bottom right box, and then go back home."


def room(rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(3)
    k, n = int(0.04 * rate), int(0.3 * rate)       # 40 ms (the sound cards and the air), RT60 0.3 s
    h = np.zeros(k + n)
    h[k:] = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (0.3 * rate))
    h[k] += 3
    return h / np.sqrt(h @ h)


@pytest.mark.parametrize("cancel", [True, False])
def test_tts_node_publishes_its_playback_and_speech_node_cancels_its_echo(ros_context, tmp_path, cancel):
    import rclpy
    from koba_interfaces.msg import AudioChunk
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.runtime import autostart, shutdown_executor
    from koba_ros.nodes.speech_node import SpeechNode
    from koba_ros.nodes.tts_node import TTSNode
    from koba_ros.speech.audio import DcBlocker, interleaved_to_mono_int16

    tts = TTSNode(context=ros_context, parameter_overrides=[Parameter("output_wav", value=str(tmp_path / "o.wav"))])
    speech = SpeechNode(context=ros_context, parameter_overrides=[Parameter("echo_cancellation", value=cancel)])
    autostart(speech)
    heard_audio = []
    speech.enqueue = heard_audio.append                 # what goes on to VAD and ASR
    probe = Node("probe", context=ros_context)
    played = []
    probe.create_subscription(AudioChunk, "/speech/playback", played.append, 10)
    audio = probe.create_publisher(AudioChunk, "/audio", 50)
    executor = QueueOnceExecutor(context=ros_context)
    for node in (speech, tts, probe):
        executor.add_node(node)

    def spin_until(condition, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            executor.spin_once(timeout_sec=0.05)
        return condition()

    try:
        assert spin_until(lambda: audio.get_subscription_count() and tts.playback_pub.get_subscription_count() >= 2)
        tts.on_say(String(data=TEXT))
        assert spin_until(lambda: played and (not cancel or speech.reference.segments)), "no playback published"
        msg = played[0]
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        reference = interleaved_to_mono_int16(msg.data, msg.sample_rate, msg.channels)
        assert len(reference) > 4 * 16000                   # the whole utterance, as 16 kHz samples
        # The microphone: 0.5 s before the loudspeaker starts, the echo through the room, 0.5 s after; stamped by
        # the capture time of each chunk's first sample (100 ms chunks).
        lead = 8000
        echo = np.convolve(np.concatenate([np.zeros(lead), reference, np.zeros(8000)]), room())[:len(reference)
                                                                                                  + lead + 8000]
        noise = np.random.default_rng(0).standard_normal(len(echo)) * 10
        mic = np.clip(0.7 * echo + noise, -32768, 32767).astype(np.int16)
        start = stamp - lead * 10**9 // 16000
        for i in range(0, len(mic), 1600):
            chunk = AudioChunk(sample_rate=16000, channels=1, data=mic[i:i + 1600].tolist())
            t = start + i * 10**9 // 16000
            chunk.header.stamp.sec, chunk.header.stamp.nanosec = t // 10**9, t % 10**9
            audio.publish(chunk)
            executor.spin_once(timeout_sec=0.01)
        assert spin_until(lambda: sum(map(len, heard_audio)) >= len(mic))
        out = np.concatenate(heard_audio).astype(np.float64)
        latency = speech.canceller.latency if cancel else 0
        out = out[latency:len(mic)]
        m = mic[:len(out)].astype(np.float64)
        late = slice(lead + len(reference) - 2 * 16000, lead + len(reference))   # the sentence's last 2 s
        reduction = 10 * np.log10((m[late] @ m[late]) / (out[late] @ out[late]))
        if cancel:
            assert reduction > 10.0, reduction               # measured 20-30 dB
        else:
            # echo_cancellation false: the audio as it came, less its DC (AudioStream's DcBlocker, session 30)
            assert np.array_equal(out, DcBlocker().feed(mic)[:len(out)])
    finally:
        shutdown_executor(executor)
        speech.trigger_deactivate()
        for node in (speech, tts, probe):
            node.destroy_node()
        rclpy.shutdown(context=ros_context)
