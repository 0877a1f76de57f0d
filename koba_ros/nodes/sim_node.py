"""sim_node: the PyBullet picking cell in real time, speaking the topics of a real cell.

Publishes /camera/color/image_raw (rgb8), /camera/aligned_depth_to_color/image_raw (32FC1 m or 16UC1 mm),
/camera/color/camera_info and /joint_states; follows trajectory_msgs/JointTrajectory on
/arm_controller/joint_trajectory (an empty one stops the arm) and a gripper width (std_msgs/Float64, m) on
/gripper/command. /sim/ground_truth (std_msgs/String, JSON) tells tests where each scene object rests.
"""
import json
import os
import threading

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.paths import sim_dir
from koba_ros.perception.messages import camera_info_msg, depth_to_msg, rgb_to_msg
from koba_ros.sim.cell import ARM_JOINTS, SimCell
from koba_ros.sim.realtime import RealTimeLoop
from koba_ros.sim.render_process import RenderProcess
from koba_ros.sim.scene_file import read_scene_file
from koba_ros.sim.trajectory_messages import trajectory_from_msg


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_node", **kwargs)
        scene = declare(self, "scene", "", "Scene file (JSON); empty: sim/scenes/demo.json.")
        headless = declare(self, "headless", True, "No window: PyBullet DIRECT with the CPU TinyRenderer.")
        camera_rate = declare(self, "camera_rate", 5.0, "Camera frames per second.")
        joint_rate = declare(self, "joint_state_rate", 50.0, "/joint_states messages per second.")
        self.depth_encoding = declare(self, "depth_encoding", "32FC1", "32FC1 (metres) or 16UC1 (millimetres).")
        self.frame_id = declare(self, "camera_frame", "camera_color_optical_frame", "Optical frame of the images.")
        reliability = declare(self, "reliability", "reliable", "QoS reliability of the camera topics.")
        render_process = declare(self, "render_process", True,
                                 "Headless: render the camera in a separate process so physics never waits for it.")
        if self.depth_encoding not in ("32FC1", "16UC1"):
            raise KobaError(f"sim_node: depth_encoding must be 32FC1 or 16UC1, got {self.depth_encoding!r}")
        try:   # before the cell and the render process are built
            require_positive(camera_rate=camera_rate, joint_state_rate=joint_rate)   # 0, < 0, NaN: one frame, then none
            qos = sensor_qos(reliability)
        except (KobaError, ValueError) as exc:
            raise KobaError(f"sim_node: {exc}") from None
        if not headless and not os.environ.get("DISPLAY"):
            self.get_logger().warning("no DISPLAY: running headless")
            headless = True
        loaded = read_scene_file(scene or sim_dir() / "scenes" / "demo.json")
        self.cell = SimCell(loaded, gui=not headless)
        self.renderer = RenderProcess(loaded) if headless and render_process else None
        self.color_pub = self.create_publisher(Image, "/camera/color/image_raw", qos)
        self.depth_pub = self.create_publisher(Image, "/camera/aligned_depth_to_color/image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "/camera/color/camera_info", qos)
        self.joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.truth_pub = self.create_publisher(String, "/sim/ground_truth", latched)
        self.create_subscription(JointTrajectoryMsg, "/arm_controller/joint_trajectory", self.on_trajectory, 10)
        self.create_subscription(Float64, "/gripper/command", self.on_gripper, 10)
        self.loop = RealTimeLoop(self.cell, camera_rate, joint_rate, self.while_up(self.publish_frame),
                                 self.while_up(self.publish_joints), renderer=self.renderer,
                                 on_error=lambda text: self.get_logger().error(text))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop.run, args=(self.stop,), daemon=True)
        self.thread.start()
        self.get_logger().info(f"cell running: {len(self.cell.scene.objects)} objects, "
                               f"{'headless' if headless else 'GUI'}, camera {camera_rate:g} Hz")

    # --- commands (ROS threads -> simulation thread) ---------------------------------------------
    def on_trajectory(self, msg: JointTrajectoryMsg) -> None:
        if not msg.points:
            self.loop.submit(lambda cell: cell.stop_arm())
            return
        try:
            traj = trajectory_from_msg(msg)
        except KobaError as exc:
            self.get_logger().error(f"trajectory rejected: {exc}")
            return
        unknown = sorted(set(traj.joint_names) - set(ARM_JOINTS))
        if unknown:  # checked here: SimCell.follow looks the names up before its own validation
            self.get_logger().error(f"trajectory rejected: unknown joint {unknown[0]!r} (arm joints: "
                                    f"{', '.join(ARM_JOINTS)})")
            return

        def follow(cell):
            try:
                cell.follow(traj)
            except KobaError as exc:   # limits are enforced: the arm holds where it is
                self.get_logger().error(f"trajectory rejected: {exc}")
        self.loop.submit(follow)

    def on_gripper(self, msg: Float64) -> None:
        def grip(cell):
            try:
                cell.set_gripper(msg.data)
            except KobaError as exc:
                self.get_logger().error(f"gripper command rejected: {exc}")
        self.loop.submit(grip)

    # --- outputs (called on the simulation thread) -----------------------------------------------
    def while_up(self, publish):
        """Publish while ROS is up; once the context shuts down (Ctrl-C, a failed graph) stop the loop quietly."""
        def guarded(*args):
            try:
                publish(*args)
            except Exception:
                if self.context.ok():
                    raise
                self.stop.set()
        return guarded

    def publish_frame(self, frame) -> None:
        stamp = self.get_clock().now().to_msg()
        h, w = frame.depth.shape
        self.color_pub.publish(rgb_to_msg(frame.rgb, stamp, self.frame_id))
        self.depth_pub.publish(depth_to_msg(frame.depth, stamp, self.frame_id, self.depth_encoding))
        self.info_pub.publish(camera_info_msg(frame.K, w, h, stamp, self.frame_id))
        boxes = [self.cell.object_box(i) for i in range(len(self.cell.scene.objects))]
        self.truth_pub.publish(String(data=json.dumps({"sim_time": round(self.cell.time, 3), "boxes": boxes})))

    def publish_joints(self, names, q, qd, sim_time) -> None:
        msg = JointState(name=list(names), position=[float(v) for v in q], velocity=[float(v) for v in qd])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(msg)

    def destroy_node(self):
        # Also for a node whose constructor failed part way (a bad scene): only what was built is closed.
        if getattr(self, "stop", None) is not None:
            self.stop.set()
        if getattr(self, "thread", None) is not None:
            self.thread.join(timeout=2.0)
        if getattr(self, "renderer", None) is not None:
            self.renderer.close()
        if getattr(self, "cell", None) is not None:
            self.cell.close()
        return super().destroy_node()


def main(args=None):
    run_node(SimNode, args)


if __name__ == "__main__":
    main()
