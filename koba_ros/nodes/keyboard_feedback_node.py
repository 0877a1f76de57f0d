"""keyboard_feedback_node: a person's key presses as /human_feedback (+ / g / y / 1 good, - / b / n / 0 bad).

Reads the controlling terminal (parameter `device`, /dev/tty); each message is stamped when the key went down.
Without a terminal it says so once and stays idle (use `koba feedback --keyboard` in another terminal).
"""
import termios
import threading

from koba_interfaces.msg import HumanFeedback
from rclpy.node import Node
from rclpy.time import Time

from koba_ros.nodes.params import declare
from koba_ros.nodes.runtime import run_node
from koba_ros.rl.keyboard import key_feedback, read_keys


class KeyboardFeedbackNode(Node):
    def __init__(self, **kwargs):
        super().__init__("keyboard_feedback_node", **kwargs)
        self.device = declare(self, "device", "/dev/tty", "Terminal to read keys from (empty: the caller feeds "
                              "publish_key, as `koba feedback --keyboard` does).")
        self.pub = self.create_publisher(HumanFeedback, "/human_feedback", 50)
        self.stop = threading.Event()
        if self.device:
            threading.Thread(target=self.read_loop, daemon=True).start()

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def read_loop(self) -> None:
        try:
            fd = open(self.device, "rb", buffering=0)  # noqa: SIM115 - held for the thread's life
        except OSError as exc:
            self.get_logger().warning(f"no keyboard: cannot open {self.device} ({exc.strerror}); idle. Run "
                                      "`koba feedback --keyboard` in a terminal instead.")
            return
        self.get_logger().info("keys: + g y 1 = good, - b n 0 = bad, q = quit reading")
        with fd:
            try:
                for key, pressed_at in read_keys(fd.fileno(), self.now, self.stop):
                    self.publish_key(key, pressed_at)
            except (OSError, termios.error) as exc:  # not a terminal
                self.get_logger().warning(f"{self.device} is not a terminal ({exc}); idle")

    def publish_key(self, key: str, pressed_at: float) -> bool:
        fb = key_feedback(key, pressed_at)
        if fb is None:
            return False
        msg = HumanFeedback(value=fb.value, confidence=1.0, source="keyboard")
        msg.header.stamp = Time(nanoseconds=int(fb.stamp * 1e9)).to_msg()
        self.pub.publish(msg)
        return True

    def destroy_node(self):
        self.stop.set()
        return super().destroy_node()


def main(args=None):
    run_node(KeyboardFeedbackNode, args)


if __name__ == "__main__":
    main()
