"""A PickPlace action server for the plumbing test: it exercises the action transport,
not picking (the real picker_node is tested in the picking tests). Succeeds for any
destination that is a box name and reports every stage as feedback; aborts otherwise."""
import sys

import rclpy
from koba_interfaces.action import PickPlace
from rclpy.action import ActionServer
from rclpy.node import Node

STAGES = ("approach", "grasp", "lift", "transfer", "release")
BOXES = ("top_left", "top_right", "bottom_left", "bottom_right")


class EchoServer(Node):
    def __init__(self):
        super().__init__("pick_place_echo_server")
        self.server = ActionServer(self, PickPlace, "pick_place", self.execute)

    def execute(self, goal_handle):
        goal = goal_handle.request
        for i, stage in enumerate(STAGES):
            goal_handle.publish_feedback(PickPlace.Feedback(stage=stage, progress=(i + 1) / len(STAGES)))
        ok = goal.destination in BOXES
        (goal_handle.succeed if ok else goal_handle.abort)()
        return PickPlace.Result(success=ok, message=f"object {goal.object_id} -> {goal.destination}")


def main():
    rclpy.init(args=sys.argv)
    node = EchoServer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
