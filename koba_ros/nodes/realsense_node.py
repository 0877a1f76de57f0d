"""realsense_node: a RealSense D4xx publishing the same camera topics as sim_node.

/camera/color/image_raw (rgb8), /camera/aligned_depth_to_color/image_raw (16UC1 mm or 32FC1 m),
/camera/color/camera_info. Lifecycle: the camera opens on configure (a clear error when there is none).
"""
import numpy as np
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive, sensor_qos
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
        self.camera = self.timer = None
        self.pubs = []

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            # Every parameter is checked before the camera opens: a bad one would otherwise surface in the timer
            # (an unknown encoding) or after the pipeline started (fps 0), leaving the camera streaming.
            qos = sensor_qos(self.reliability)
            if self.depth_encoding not in ("16UC1", "32FC1"):
                raise KobaError(f"depth_encoding must be 16UC1 or 32FC1, got {self.depth_encoding!r}")
            require_positive(width=self.width, height=self.height, fps=self.fps)
            self.camera = RealSenseCamera(self.width, self.height, self.fps, self.serial)
        except (KobaError, ValueError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.color_pub = self.create_lifecycle_publisher(Image, "/camera/color/image_raw", qos)
        self.depth_pub = self.create_lifecycle_publisher(Image, "/camera/aligned_depth_to_color/image_raw", qos)
        self.info_pub = self.create_lifecycle_publisher(CameraInfo, "/camera/color/camera_info", qos)
        self.pubs = [self.color_pub, self.depth_pub, self.info_pub]
        self.timer = self.create_timer(0.5 / self.fps, self.poll)
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
        # What configure made goes with it: a second configure would otherwise poll and publish twice.
        if self.timer is not None:
            self.destroy_timer(self.timer)
        for pub in self.pubs:
            self.destroy_lifecycle_publisher(pub)
        self.timer, self.pubs = None, []
        if self.camera:
            self.camera.close()
            self.camera = None
        return TransitionCallbackReturn.SUCCESS


def main(args=None):
    run_node(RealSenseNode, args)


if __name__ == "__main__":
    main()
