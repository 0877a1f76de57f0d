"""perception_node: RGB-D frames -> /perception/objects (koba_interfaces/DetectedObjectArray) in base_link.

Subscribes /camera/color/image_raw, /camera/aligned_depth_to_color/image_raw and /camera/color/camera_info
(intrinsics), pairs colour and depth by stamp (perception/frame_pairing.py), fills small depth holes
(perception/depth_holes.py) and runs the class-agnostic segmenter. The camera pose in base_link is a parameter
(default: the simulated cell's overhead camera). When nothing can be perceived it says which input is missing.
"""
import threading
import time

from koba_interfaces.msg import DetectedObjectArray
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.camera_frame import depth_for_segmenter
from koba_ros.perception.frame_pairing import StampPairer, missing_input
from koba_ros.perception.messages import camera_pose_from_values, msg_to_depth, msg_to_K, msg_to_rgb, objects_to_msg
from koba_ros.perception.segmenter import perceive
from koba_ros.sim.layout import camera_pose

WAIT_WARNING_S = 3.0
COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"


class PerceptionNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("perception_node", **kwargs)
        self.reliability = declare(self, "reliability", "reliable", "QoS reliability of the camera topics.")
        pose = declare(self, "camera_pose", [float(v) for v in camera_pose().ravel()],
                       "Camera optical frame in base_link, 4x4 row-major (16 numbers).")
        self.max_rate = declare(self, "max_rate", 5.0, "Most perception runs per second.")
        self.stamp_tolerance = declare(self, "stamp_tolerance", 0.05, "Colour/depth stamps this close pair up, s.")
        self.depth_scale = declare(self, "depth_scale", 0.001, "Metres per unit of a 16UC1 depth image.")
        self.fill_holes = declare(self, "fill_depth_holes", True, "Fill small regions without depth (camera "
                                  "drop-outs) from their nearest valid pixels, so they do not split objects.")
        self.max_hole_px = declare(self, "max_hole_px", 256, "Largest region without depth that is filled, px.")
        self.pose_values = pose
        self.lock = threading.Lock()
        self.pairer = StampPairer(self.stamp_tolerance)
        self.K = self.K_size = None          # intrinsics, and the (height, width) of the images they are for
        self.inputs, self.timer, self.publisher = [], None, None   # what configure makes and cleanup destroys
        self.listening_since = time.monotonic()
        self.heard: dict[str, float] = {}    # "color", "depth", "pair" -> when last
        self.last_run = 0.0

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.camera_pose = camera_pose_from_values(self.pose_values)
            qos = sensor_qos(self.reliability)
            require_positive(max_rate=self.max_rate, stamp_tolerance=self.stamp_tolerance,
                             depth_scale=self.depth_scale, max_hole_px=self.max_hole_px)
        except (ValueError, KobaError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.publisher = self.create_lifecycle_publisher(DetectedObjectArray, "/perception/objects", 10)
        self.inputs = [self.create_subscription(Image, COLOR_TOPIC, self.on_color, qos),
                       self.create_subscription(Image, DEPTH_TOPIC, self.on_depth, qos),
                       self.create_subscription(CameraInfo, INFO_TOPIC, self.on_info, qos)]
        self.timer = self.create_timer(1.0, self.check_frames)
        # Counted from the first check, once the node spins: in a composed graph the other nodes take ~12 s to build
        # before anything spins, and a clock started here warned "waiting for camera frames" at every start.
        self.listening_since = None
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        # What configure made goes with it: a second configure would otherwise subscribe, check and publish twice.
        for subscription in self.inputs:
            self.destroy_subscription(subscription)
        self.destroy_timer(self.timer)
        self.destroy_lifecycle_publisher(self.publisher)
        self.inputs, self.timer, self.publisher = [], None, None
        with self.lock:   # frames and intrinsics of the camera before are no longer trusted
            self.pairer.clear()
            self.K = self.K_size = None
            self.heard.clear()
        return TransitionCallbackReturn.SUCCESS

    def on_info(self, msg: CameraInfo) -> None:
        try:
            K = msg_to_K(msg)
        except KobaError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        with self.lock:
            self.K, self.K_size = K, (msg.height, msg.width)

    def on_color(self, msg: Image) -> None:
        self.offer("color", msg)

    def on_depth(self, msg: Image) -> None:
        self.offer("depth", msg)

    def offer(self, kind: str, msg: Image) -> None:
        """Hand a colour or depth frame to the pairer; perceive the pair it completes (whichever came last)."""
        now = time.monotonic()
        with self.lock:
            self.heard[kind] = now
            pair = self.pairer.add(kind, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, msg)
            if pair is not None:
                self.heard["pair"] = now
            K, K_size = self.K, self.K_size
        if pair is None or K is None or now - self.last_run < 1.0 / self.max_rate:
            return
        self.last_run = now
        color, depth_msg = pair
        try:
            rgb, depth = msg_to_rgb(color), msg_to_depth(depth_msg, self.depth_scale)
            depth = depth_for_segmenter(rgb, depth, K_size, self.max_hole_px if self.fill_holes else None)
            objects = perceive(rgb, depth, K, self.camera_pose)
        except KobaError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        except Exception as exc:  # noqa: BLE001 - one frame the segmenter cannot take must not end the node
            self.get_logger().error(f"perception failed on a frame: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)
            return
        self.publisher.publish(objects_to_msg(objects, depth_msg.header.stamp))

    def check_frames(self) -> None:
        """Say which input keeps frames from being perceived (nothing is published and nothing else says why)."""
        if self.listening_since is None:
            self.listening_since = time.monotonic()
        with self.lock:
            missing = missing_input(time.monotonic(), self.listening_since, WAIT_WARNING_S,
                                    depth_at=self.heard.get("depth"), color_at=self.heard.get("color"),
                                    has_info=self.K is not None, paired_at=self.heard.get("pair"))
            gap = self.pairer.last_gap_s
        if missing is None:
            return
        reasons = {
            "depth": f"waiting for camera frames: no depth image on {DEPTH_TOPIC}",
            "color": f"depth frames come but no colour image on {COLOR_TOPIC}: nothing is perceived",
            "info": f"frames come but no camera_info on {INFO_TOPIC}: nothing is perceived without intrinsics",
            "stamps": f"colour and depth frames come but their stamps are never within stamp_tolerance "
                      f"{self.stamp_tolerance:g} s" + (f" (nearest {gap:.3f} s apart)" if gap is not None else "")
                      + ": nothing is perceived",
        }
        self.get_logger().warning(reasons[missing], throttle_duration_sec=10.0)


def main(args=None):
    run_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
