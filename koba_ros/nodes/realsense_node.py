"""realsense_node: a RealSense D4xx publishing the same camera topics as sim_node.

/camera/color/image_raw (rgb8), /camera/aligned_depth_to_color/image_raw (16UC1 mm or 32FC1 m),
/camera/color/camera_info. Lifecycle: the camera opens on configure (a clear error when there is none).
"""
import numpy as np
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.messages import camera_info_msg, depth_to_msg, rgb_to_msg
from koba_ros.perception.realsense import RealSenseCamera


class RealSenseNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("realsense_node", **kwargs)
        self.serial = declare(self, "serial", "", "Serial number of the camera (empty: the first one).")
        self.width = declare(self, "width", 640, "Image width, px.")
        self.height = declare(self, "height", 480, "Image height, px.")
        self.fps = declare(self, "fps", 15, "Frames per second (6, 15, 30).")
        self.depth_encoding = declare(self, "depth_encoding", "16UC1", "16UC1 (mm) or 32FC1 (m).")
        self.frame_id = declare(self, "camera_frame", "camera_color_optical_frame", "Optical frame of the images.")
        self.reliability = declare(self, "reliability", "reliable", "QoS reliability of the camera topics.")
        self.camera = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            qos = sensor_qos(self.reliability)
            self.camera = RealSenseCamera(self.width, self.height, self.fps, self.serial)
        except (KobaError, ValueError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.color_pub = self.create_lifecycle_publisher(Image, "/camera/color/image_raw", qos)
        self.depth_pub = self.create_lifecycle_publisher(Image, "/camera/aligned_depth_to_color/image_raw", qos)
        self.info_pub = self.create_lifecycle_publisher(CameraInfo, "/camera/color/camera_info", qos)
        self.create_timer(0.5 / self.fps, self.poll)
        return TransitionCallbackReturn.SUCCESS

    def poll(self) -> None:
        frame = self.camera.read(timeout_ms=int(2000 / self.fps)) if self.camera else None
        if frame is None:
            return
        rgb, depth, K = frame
        stamp = self.get_clock().now().to_msg()
        self.color_pub.publish(rgb_to_msg(rgb, stamp, self.frame_id))
        self.depth_pub.publish(depth_to_msg(np.nan_to_num(depth, nan=0.0), stamp, self.frame_id, self.depth_encoding))
        self.info_pub.publish(camera_info_msg(K, rgb.shape[1], rgb.shape[0], stamp, self.frame_id,
                                              self.camera.intrinsics.coeffs))

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if self.camera:
            self.camera.close()
            self.camera = None
        return TransitionCallbackReturn.SUCCESS


def main(args=None):
    run_node(RealSenseNode, args)


if __name__ == "__main__":
    main()
