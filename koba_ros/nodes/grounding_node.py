"""grounding_node: typed or spoken instructions + the latest perceived objects -> a pick goal, or a question.

Inputs: /instruction (std_msgs/String), /speech/utterance (koba_interfaces/Utterance) -- same meaning --
and the latest /perception/objects (koba_interfaces/DetectedObjectArray). Outputs: /grounding/result
(koba_interfaces/GroundingResult) each turn, the robot's words on /speech/say (std_msgs/String), and a
koba_interfaces/action/PickPlace goal when the instruction is resolved. While a question is open the next
text is its answer; "stop" / "cancel" cancels a running goal (or the open question). Lifecycle: the
model loads on configure.
"""
from __future__ import annotations

import threading

from koba_interfaces.action import PickPlace
from koba_interfaces.msg import DetectedObjectArray, GroundingResult, Utterance
from rclpy.action import ActionClient
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from std_msgs.msg import String

from koba_ros.errors import KobaError
from koba_ros.grounding import lexicon
from koba_ros.grounding.dialogue import Dialogue, Settings
from koba_ros.grounding.messages import fill_result
from koba_ros.nodes.params import declare, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.messages import msg_to_objects


class GroundingNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("grounding_node", **kwargs)
        self.model_path = declare(self, "model_path", "",
                                  "Grounding weights (.pt); empty: models/grounding/grounding.pt.")
        self.action_name = declare(self, "action_name", "/pick_place", "koba_interfaces/action/PickPlace server.")
        self.objects_reliability = declare(self, "objects_reliability", "reliable",
                                           "QoS reliability of /perception/objects.")
        self.min_confidence = declare(self, "min_utterance_confidence", 0.0,
                                      "Utterances below this ASR confidence are ignored.")
        self.settings = Settings(
            ask_below=declare(self, "ask_below", Settings.ask_below, "Act when the best object's calibrated "
                              "probability reaches this; below it, ask."),
            reject_above=declare(self, "reject_above", Settings.reject_above, "Refuse when p(none of them) "
                                 "reaches this."),
            dest_ask_below=declare(self, "dest_ask_below", Settings.dest_ask_below, "Ask for the box below this."),
            max_turns=declare(self, "max_turns", Settings.max_turns, "Questions before giving up politely."))
        self.grounder = None
        self.objects = []
        self.dialogue: Dialogue | None = None
        self.goal_handle = None
        self.lock = threading.Lock()
        self.result_pub = self.say_pub = None
        self.subs = []
        self.action = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        from koba_ros.grounding.grounder import Grounder

        try:
            sensor_qos(self.objects_reliability)
            self.grounder = Grounder(self.model_path or None)
        except (KobaError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.result_pub = self.create_lifecycle_publisher(GroundingResult, "/grounding/result", 10)
        self.say_pub = self.create_lifecycle_publisher(String, "/speech/say", 10)
        self.action = ActionClient(self, PickPlace, self.action_name)
        self.get_logger().info(f"grounding model loaded ({self.grounder.encoder_kind} text encoder)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.subs = [
            self.create_subscription(String, "/instruction", lambda m: self.on_text(m.data), 10),
            self.create_subscription(Utterance, "/speech/utterance", self.on_utterance, 10),
            self.create_subscription(DetectedObjectArray, "/perception/objects", self.on_objects,
                                     sensor_qos(self.objects_reliability, depth=1)),
        ]
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.grounder = None
        return TransitionCallbackReturn.SUCCESS

    # --- inputs ------------------------------------------------------------------------------
    def on_objects(self, msg: DetectedObjectArray) -> None:
        self.objects = msg_to_objects(msg)

    def on_utterance(self, msg: Utterance) -> None:
        if msg.confidence >= self.min_confidence:
            self.on_text(msg.text)

    def on_text(self, text: str) -> None:
        with self.lock:
            try:
                self.respond(text)
            except KobaError as exc:      # e.g. objects whose features do not fit the model
                self.get_logger().error(str(exc))
                self.say(f"Sorry, I can't do that: {exc}")

    def respond(self, text: str) -> None:  # not "handle": rclpy Node owns that name
        if lexicon.is_cancel(text) and self.goal_handle is not None:
            self.goal_handle.cancel_goal_async()
            self.dialogue = None
            self.say("Stopping.")
            return
        if self.dialogue is not None and self.dialogue.pending:
            reply = self.dialogue.answer(text)
        else:
            self.dialogue = Dialogue(self.grounder, self.objects, self.settings)
            reply = self.dialogue.start(text)
        msg = GroundingResult()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "base_link"
        fill_result(msg, text, reply, self.dialogue.objects, None)
        self.result_pub.publish(msg)
        self.say(reply.text)
        if reply.status == "done":
            self.send_goal(self.dialogue.objects[reply.target], reply.destination)
        if reply.status != "question":
            self.dialogue = None

    # --- outputs -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.say_pub.publish(String(data=text))

    def send_goal(self, obj, destination: str) -> None:
        goal = PickPlace.Goal(object_id=obj.id, destination=destination)
        goal.pick_position.x, goal.pick_position.y, goal.pick_position.z = (float(v) for v in obj.position)
        goal.object_size.x, goal.object_size.y, goal.object_size.z = (float(v) for v in obj.size)
        if not self.action.server_is_ready():
            self.get_logger().warning(f"no PickPlace server on {self.action_name}; goal not sent")
            self.say("I can't reach the arm right now.")
            return
        self.action.send_goal_async(goal).add_done_callback(self.on_goal_response)

    def on_goal_response(self, future) -> None:
        handle = future.result()
        if not handle.accepted:
            self.say("The arm refused that move.")
            return
        self.goal_handle = handle
        handle.get_result_async().add_done_callback(self.on_goal_result)

    def on_goal_result(self, future) -> None:
        self.goal_handle = None
        result = future.result().result
        self.say("Done." if result.success else f"I couldn't finish: {result.message}")


def main(args=None):
    run_node(GroundingNode, args)


if __name__ == "__main__":
    main()
