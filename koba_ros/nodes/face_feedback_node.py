"""face_feedback_node: a person's facial expressions -> /human_feedback (koba_interfaces/HumanFeedback, source "face").

Frames come from a camera topic (sensor_msgs/Image) or a local webcam through OpenCV. A smile or
a nod is +1, a frown or a head shake -1, each one message stamped at the expression's onset.
An annotated picture goes to /face/debug_image. Lifecycle: FaceMesh is loaded and the webcam
opened on configure; frames flow while active. A missing camera fails configure with one clear
line; a camera that stops mid-run is logged and retried, never a crash.
"""
from __future__ import annotations

import time

from koba_interfaces.msg import HumanFeedback
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.time import Time
from sensor_msgs.msg import Image

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive, sensor_qos
from koba_ros.nodes.runtime import run_node

NO_CAMERA_HINT = "no camera for face feedback; start the graph with --arg feedback:=keyboard or feedback:=simulated"


class FaceFeedbackNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("face_feedback_node", **kwargs)
        self.source = declare(self, "source", "webcam", "Where frames come from: 'topic' (image_topic) or 'webcam'.")
        self.image_topic = declare(self, "image_topic", "/camera/color/image_raw", "sensor_msgs/Image input topic.")
        self.reliability = declare(self, "reliability", "best_effort", "QoS reliability of the image input.")
        self.webcam_device = declare(self, "webcam_device", "0", "OpenCV camera: an index ('0') or a device path.")
        self.webcam_fps = declare(self, "webcam_fps", 15.0, "Webcam frames read per second.")
        self.camera_timeout_s = declare(self, "camera_timeout_s", 3.0, "No frame for this long: say the camera is "
                                        "gone (and, for a webcam, try to reopen it).")
        self.debug_image = declare(self, "debug_image", True, "Publish the annotated picture on /face/debug_image.")
        self.config_values = {
            "max_faces": declare(self, "max_faces", 4, "Faces looked for; the largest usable one is read."),
            "calibration_s": declare(self, "calibration_s", 2.0, "Seconds of the person's rest face taken as "
                                     "their neutral before any feedback (0: population prior)."),
            "smoothing_s": declare(self, "smoothing_s", 0.1, "Time constant of the expression score's smoothing."),
            "on_threshold": declare(self, "on_threshold", 0.45, "Smoothed score that makes a feedback event."),
            "off_threshold": declare(self, "off_threshold", 0.2, "Score below which the next event is armed."),
            "min_duration_s": declare(self, "min_duration_s", 0.2, "An expression must last this long to count."),
            "gestures": declare(self, "gestures", True, "Head nod -> +1, head shake -> -1."),
        }
        self.pipeline = None
        self.webcam = None
        self.feedback_pub = self.debug_pub = None
        self.subscription = self.timer = self.watchdog = None
        self.last_frame = time.monotonic()
        self.camera_lost = False

    # --- lifecycle -----------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        from koba_ros.face.pipeline import FaceConfig, FacePipeline

        try:
            if self.source not in ("topic", "webcam"):
                raise KobaError(f"source must be 'topic' or 'webcam', got {self.source!r}")
            sensor_qos(self.reliability)  # checks the value
            require_positive(webcam_fps=self.webcam_fps, camera_timeout_s=self.camera_timeout_s)
            self.pipeline = FacePipeline(FaceConfig(**self.config_values), video=True)
            if self.source == "webcam":
                self.webcam = self.open_webcam()
        except (KobaError, ValueError) as exc:
            self.failure = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self.release()
            return TransitionCallbackReturn.FAILURE
        self.feedback_pub = self.create_lifecycle_publisher(HumanFeedback, "/human_feedback", 10)
        self.debug_pub = self.create_lifecycle_publisher(Image, "/face/debug_image", 2)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        if self.source == "webcam":
            self.timer = self.create_timer(1.0 / max(float(self.webcam_fps), 1.0), self.on_webcam_tick)
        else:
            self.subscription = self.create_subscription(Image, self.image_topic, self.on_image,
                                                         sensor_qos(self.reliability, depth=1))
        self.last_frame = time.monotonic()
        self.watchdog = self.create_timer(1.0, self.check_camera)
        calibrating = f"; calibrating on {self.pipeline.config.calibration_s:g} s of a rest face" \
            if self.pipeline.calibrating else ""
        where = f"webcam {self.webcam_device}" if self.source == "webcam" else self.image_topic
        self.get_logger().info(f"reading faces from {where}{calibrating}")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        for timer in (self.timer, self.watchdog):
            if timer is not None:
                self.destroy_timer(timer)
        if self.subscription is not None:
            self.destroy_subscription(self.subscription)
        self.timer = self.watchdog = self.subscription = None
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.release()
        for pub in (self.feedback_pub, self.debug_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.feedback_pub = self.debug_pub = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        if self.webcam is not None:
            self.webcam.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.webcam = self.pipeline = None

    # --- frames ----------------------------------------------------------------------------
    def open_webcam(self):
        from koba_ros.face.frames import Webcam

        device = int(self.webcam_device) if str(self.webcam_device).isdigit() else self.webcam_device
        try:
            return Webcam(device)
        except KobaError as exc:
            raise KobaError(f"{exc}: {NO_CAMERA_HINT}") from None

    def on_image(self, msg: Image) -> None:
        from koba_ros.face.frames import image_msg_to_rgb

        try:
            rgb = image_msg_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except KobaError as exc:
            self.get_logger().warning(f"dropped a frame: {exc}", throttle_duration_sec=5.0)
            return
        if msg.header.stamp.sec < 0:  # rclpy's Time refuses it with a ValueError that would end the node
            self.get_logger().warning(f"dropped a frame: negative stamp ({msg.header.stamp.sec} s)",
                                      throttle_duration_sec=5.0)
            return
        stamp = Time.from_msg(msg.header.stamp)
        self.on_frame(rgb, stamp if stamp.nanoseconds else self.get_clock().now(), msg.header.frame_id)

    def on_webcam_tick(self) -> None:
        if self.webcam is None:
            return
        rgb = self.webcam.read()
        if rgb is not None:
            self.on_frame(rgb, self.get_clock().now(), "webcam")

    def on_frame(self, rgb, stamp: Time, frame_id: str) -> None:
        if self.pipeline is None:
            return
        self.last_frame = time.monotonic()
        if self.camera_lost:
            self.camera_lost = False
            self.get_logger().info("camera is back")
        t = stamp.nanoseconds * 1e-9
        calibrating = self.pipeline.calibrating
        try:
            result = self.pipeline.process(rgb, t)
        except KobaError as exc:
            self.get_logger().warning(f"dropped a frame: {exc}", throttle_duration_sec=5.0)
            return
        if calibrating and not self.pipeline.calibrating:
            calibrator = self.pipeline.calibrator
            if calibrator.assumed:
                self.get_logger().warning(
                    f"this face never looked neutral against the population prior for {calibrator.give_up_s:g} s: "
                    f"its last {calibrator.seconds:g} s are taken as its rest face")
            else:
                self.get_logger().info("calibrated on the person's rest face")
        for event in result.events:
            msg = HumanFeedback(value=float(event.value), confidence=float(event.confidence), source="face")
            msg.header.stamp = Time(nanoseconds=round(event.onset * 1e9)).to_msg()  # the onset, not now
            msg.header.frame_id = frame_id
            self.feedback_pub.publish(msg)
            self.get_logger().info(f"feedback {event.value:+d} ({event.cue}, confidence {event.confidence:.2f}, "
                                   f"{event.decided - event.onset:.2f} s after onset)")
        if self.debug_image and self.debug_pub.get_subscription_count() > 0:
            try:
                self.publish_debug(rgb, result, stamp, frame_id)
            except Exception as exc:  # noqa: BLE001 - the picture is only for viewing: a fault drawing it drops
                # that picture, never the node (an exception here would end it, and with it a composed `koba up`)
                self.get_logger().warning(f"dropped a debug image: {type(exc).__name__}: {exc}",
                                          throttle_duration_sec=5.0)

    def publish_debug(self, rgb, result, stamp: Time, frame_id: str) -> None:
        from koba_ros.face.annotate import annotate
        from koba_ros.face.frames import rgb_to_image_fields

        status = "calibrating: rest face please" if self.pipeline.calibrating else ""
        msg = Image(**rgb_to_image_fields(annotate(rgb, result, status)))
        msg.header.stamp = stamp.to_msg()
        msg.header.frame_id = frame_id
        self.debug_pub.publish(msg)

    def check_camera(self) -> None:
        """A camera that stops delivering is a log line (and, for a webcam, a reopen attempt), not a crash."""
        silent = time.monotonic() - self.last_frame
        if silent < float(self.camera_timeout_s):
            return
        if not self.camera_lost:
            self.camera_lost = True
            where = f"webcam {self.webcam_device}" if self.source == "webcam" else f"topic {self.image_topic}"
            self.get_logger().error(f"no frames from {where} for {silent:.0f} s; {NO_CAMERA_HINT}")
        if self.source == "webcam":
            if self.webcam is not None:
                self.webcam.close()
            try:
                self.webcam = self.open_webcam()
            except KobaError:
                self.webcam = None  # still gone; try again on the next tick


def main(args=None):
    run_node(FaceFeedbackNode, args)


if __name__ == "__main__":
    main()
