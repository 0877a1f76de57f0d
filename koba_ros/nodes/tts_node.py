"""tts_node: speaks /speech/say (std_msgs/String) with espeak-ng.

Publishes /speech/speaking (koba_interfaces/SpeakingState, latched) while it talks, so the
ASR can ignore the robot's own voice. Without a sound device it writes the audio to a file
and says so once.
Publishes each utterance's samples on /speech/playback (koba_interfaces/AudioChunk, stamped when its first sample
starts playing; `publish_playback`) as speech_node's echo-cancellation reference. Without a sound device they are
published all the same, as the audio written to the file (a simulated room can play them back).
A stop (a stop command on /speech/utterance, /teleop/command or /instruction) drops the sentences still waiting, but
not the stop's own reply: speech/reply_queue.py decides what goes (and says why).
"""
import threading

import numpy as np
from koba_interfaces.msg import AudioChunk, SpeakingState, Utterance
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare
from koba_ros.nodes.runtime import run_node
from koba_ros.speech.reply_queue import ReplyQueue
from koba_ros.speech.tts import Speaker
from koba_ros.teleop.commands import STOP_REPEAT_S


class TTSNode(Node):
    def __init__(self, **kwargs):
        super().__init__("tts_node", **kwargs)
        voice = declare(self, "voice", "en-us", "espeak-ng voice (espeak-ng --voices lists them).")
        rate = declare(self, "rate", 160, "Speaking rate, words per minute (80..450).")
        output_wav = declare(self, "output_wav", "", "Write each utterance to this WAV file (empty: play it).")
        publish_playback = declare(self, "publish_playback", True, "Publish each utterance's samples on "
                                   "/speech/playback as it starts playing (speech_node's echo-cancellation "
                                   "reference).")
        try:
            self.speaker = Speaker(voice, rate, output_wav)
        except KobaError as exc:
            raise KobaError(f"tts_node: {exc}") from None
        if not self.speaker.play:
            where = output_wav or "a temporary WAV file"
            self.get_logger().warning(f"no sound device: speech goes to {where}")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.speaking_pub = self.create_publisher(SpeakingState, "/speech/speaking", latched)
        self.playback_pub = self.create_publisher(AudioChunk, "/speech/playback", 10) if publish_playback else None
        if self.playback_pub is not None:
            self.speaker.on_playback = self.publish_playback
        # Made before /speech/say's: rclpy offers a node's ready subscriptions in the order they were made, so a
        # typed stop (no stamp) comes before a reply ready with it.
        self.create_subscription(Utterance, "/speech/utterance", lambda m: self.on_stop(m.text, m.header.stamp), 10)
        self.create_subscription(String, "/teleop/command", lambda m: self.on_stop(m.data), 10)
        self.create_subscription(String, "/instruction", lambda m: self.on_stop(m.data, teleop=False), 10)
        self.create_subscription(String, "/speech/say", self.on_say, 10)
        # Speak on a worker thread so a long sentence never blocks the executor. Each sentence waits with the ROS
        # time it came (ns), for on_stop.
        self.pending = ReplyQueue(maxsize=20, repeat_s=STOP_REPEAT_S)
        self.worker = threading.Thread(target=self.speak_loop, daemon=True)
        self.worker.start()
        self.publish_state(False, "")

    def on_say(self, msg: String) -> None:
        if not self.pending.put(self.get_clock().now().nanoseconds, msg.data):
            self.get_logger().warning("speech queue full; dropping: " + msg.data[:60])

    def on_stop(self, text: str, stamp=None, teleop: bool = True) -> None:
        """Drop the sentences that came before a stop (`stamp`: the stop's, if any; `teleop`: a topic teleop_node
        hears too). ReplyQueue.on_command decides which."""
        stamp_ns = None if stamp is None else stamp.sec * 1_000_000_000 + stamp.nanosec
        dropped = self.pending.on_command(text, self.get_clock().now().nanoseconds, stamp_ns, teleop)
        if dropped:
            self.get_logger().info(f"stop: dropped {dropped} sentence(s) not yet said")

    def speak_loop(self) -> None:
        while True:
            text = self.pending.get()
            if text is None:
                return
            self.publish_state(True, text)
            try:
                spoken = self.speaker.speak(text)
                self.get_logger().info(f"said {spoken.text!r} ({spoken.duration:.1f} s)")
            except KobaError as exc:
                self.get_logger().error(str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the worker: the next sentence is spoken
                self.get_logger().error(f"could not say {text[:60]!r}: {type(exc).__name__}: {exc}")
            finally:
                self.publish_state(False, "")

    def publish_playback(self, samples: np.ndarray, rate: int) -> None:
        """The utterance, stamped now: it starts playing as this returns (the sound card's own output delay, tens of
        ms, is left to the echo canceller's tail)."""
        try:
            msg = AudioChunk(sample_rate=int(rate), channels=1, data=np.asarray(samples, dtype=np.int16).tolist())
            msg.header.stamp = self.get_clock().now().to_msg()
            self.playback_pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - the robot still speaks; only the canceller goes without its reference
            self.get_logger().error(f"could not publish the playback reference: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def publish_state(self, speaking: bool, text: str) -> None:
        msg = SpeakingState(speaking=speaking, text=text)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.speaking_pub.publish(msg)

    def destroy_node(self):
        # Let the worker finish the sentence it is on, so it never publishes through a destroyed node.
        self.pending.close()
        self.worker.join(timeout=10.0)
        return super().destroy_node()


def main(args=None):
    run_node(TTSNode, args)


if __name__ == "__main__":
    main()
