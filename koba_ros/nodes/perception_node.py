"""perception_node: RGB-D frames -> /perception/objects (koba_interfaces/DetectedObjectArray) in base_link.

Subscribes /camera/color/image_raw, /camera/aligned_depth_to_color/image_raw and /camera/color/camera_info
(intrinsics), pairs colour and depth by stamp, and runs the class-agnostic segmenter. The camera pose in
base_link is a parameter (default: the simulated cell's overhead camera). Says so when frames stop coming.
"""
import threading
import time

from koba_interfaces.msg import DetectedObjectArray
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.messages import camera_pose_from_values, msg_to_depth, msg_to_K, msg_to_rgb, objects_to_msg
from koba_ros.perception.segmenter import perceive
from koba_ros.sim.layout import camera_pose

WAIT_WARNING_S = 3.0


class PerceptionNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("perception_node", **kwargs)
        self.reliability = declare(self, "reliability", "reliable", "QoS reliability of the camera topics.")
        pose = declare(self, "camera_pose", [float(v) for v in camera_pose().ravel()],
                       "Camera optical frame in base_link, 4x4 row-major (16 numbers).")
        self.max_rate = declare(self, "max_rate", 5.0, "Most perception runs per second.")
        self.stamp_tolerance = declare(self, "stamp_tolerance", 0.05, "Colour/depth stamps this close pair up, s.")
        self.depth_scale = declare(self, "depth_scale", 0.001, "Metres per unit of a 16UC1 depth image.")
        self.pose_values = pose
        self.lock = threading.Lock()
        self.color = self.K = None
        self.last_frame = time.monotonic()
        self.last_run = 0.0

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.camera_pose = camera_pose_from_values(self.pose_values)
            qos = sensor_qos(self.reliability)
            require_positive(max_rate=self.max_rate, stamp_tolerance=self.stamp_tolerance,
                             depth_scale=self.depth_scale)
        except (ValueError, KobaError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.publisher = self.create_lifecycle_publisher(DetectedObjectArray, "/perception/objects", 10)
        self.create_subscription(Image, "/camera/color/image_raw", self.on_color, qos)
        self.create_subscription(Image, "/camera/aligned_depth_to_color/image_raw", self.on_depth, qos)
        self.create_subscription(CameraInfo, "/camera/color/camera_info", self.on_info, qos)
        self.create_timer(1.0, self.check_frames)
        return TransitionCallbackReturn.SUCCESS

    def on_info(self, msg: CameraInfo) -> None:
        try:
            K = msg_to_K(msg)
        except KobaError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        with self.lock:
            self.K = K

    def on_color(self, msg: Image) -> None:
        with self.lock:
            self.color = msg

    def on_depth(self, msg: Image) -> None:
        self.last_frame = time.monotonic()
        with self.lock:
            color, K = self.color, self.K
        if color is None or K is None or time.monotonic() - self.last_run < 1.0 / self.max_rate:
            return
        dt = abs((color.header.stamp.sec - msg.header.stamp.sec) + (color.header.stamp.nanosec
                                                                     - msg.header.stamp.nanosec) * 1e-9)
        if dt > self.stamp_tolerance:
            return
        self.last_run = time.monotonic()
        try:
            rgb, depth = msg_to_rgb(color), msg_to_depth(msg, self.depth_scale)
            if rgb.shape[:2] != depth.shape:
                raise KobaError(f"colour {rgb.shape[:2]} and depth {depth.shape} sizes differ (align depth to colour)")
            objects = perceive(rgb, depth, K, self.camera_pose)
        except KobaError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        except Exception as exc:  # noqa: BLE001 - one frame the segmenter cannot take must not end the node
            self.get_logger().error(f"perception failed on a frame: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)
            return
        self.publisher.publish(objects_to_msg(objects, msg.header.stamp))

    def check_frames(self) -> None:
        if time.monotonic() - self.last_frame > WAIT_WARNING_S:
            self.get_logger().warning("waiting for camera frames on /camera/aligned_depth_to_color/image_raw "
                                      "and /camera/color/image_raw", throttle_duration_sec=10.0)


def main(args=None):
    run_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
