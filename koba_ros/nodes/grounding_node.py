"""grounding_node: typed or spoken instructions + the latest perceived objects -> a pick goal, or a question.

Inputs: /instruction (std_msgs/String), /speech/utterance (koba_interfaces/Utterance) -- same meaning --
and the latest /perception/objects (koba_interfaces/DetectedObjectArray). Outputs: /grounding/result
(koba_interfaces/GroundingResult) each turn, the robot's words on /speech/say (std_msgs/String), and a
koba_interfaces/action/PickPlace goal when the instruction is resolved. While a question is open the next
text is its answer. "stop" / "cancel" cancels the running goal, a goal still waiting to be accepted (as soon
as it is), the open question or a turn still being thought about: stop words are heard by their own
subscriptions in their own callback group, so they never wait behind a grounding turn and are never read as
an instruction. A spoken stop heard while the robot itself talks (speech_node listens for "stop" over its
voice, /speech/speaking) cancels a move or a turn being decided, never an open question alone: the robot's own
question can sound like "stop" ("top left, top right"). A move is announced only while the PickPlace server
is there ("I can't reach the arm right now." otherwise), and a goal whose server vanishes (picker_node died) is
given up once a second's check notices, in so many words. Lifecycle: the model loads on configure.
"""
from __future__ import annotations

import threading
import time

from action_msgs.msg import GoalStatus
from koba_interfaces.action import PickPlace
from koba_interfaces.msg import DetectedObjectArray, GroundingResult, SpeakingState, Utterance
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

from koba_ros.errors import KobaError, reason
from koba_ros.grounding import crop_kinds, lexicon
from koba_ros.grounding.dialogue import Dialogue, Reply, Settings, cancels, check_settings
from koba_ros.grounding.messages import fill_result
from koba_ros.nodes.params import declare, require_positive, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.messages import msg_to_objects

# Replies with no "stop" in them: speech_node hears "stop" while the robot talks, and "Stopping." is heard as one
# in every espeak voice measured (docs/grounding.md, Session 24).
HOLDING_REPLY, CANCELLED_REPLY = "Holding still.", "Move cancelled."
PLACED_BEFORE_STOP = "I had already put it down in the box."
# Not "Sorry, something went wrong; ...": en-gb's "something went wrong" is heard as a stop (session 30; teleop's too).
FAILED_REPLY = "Sorry, that did not work; please try again."


class GroundingNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("grounding_node", **kwargs)
        self.model_path = declare(self, "model_path", "",
                                  "Grounding weights (.pt) or ensemble file (.json); empty: "
                                  "models/grounding/grounding_default.json.")
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
            max_turns=declare(self, "max_turns", Settings.max_turns, "Questions before giving up politely."),
            crop_veto=declare(self, "crop_veto", Settings.crop_veto, "A sure pick is of the kind the words name "
                              "only if the crop CNN gives that kind this much probability (0: no second opinion)."),
            crop_kinds=declare(self, "crop_kinds_path", Settings.crop_kinds, "Crop CNN weights; empty: "
                               "models/grounding/crop_kinds.pt."))
        self.question_timeout = declare(self, "question_timeout_s", 60.0, "A question unanswered this long has "
                                        "expired: what is said next is a new instruction, not its answer.")
        self.grounder = None
        self.objects = []
        self.dialogue: Dialogue | None = None
        self.asked_at = 0.0              # time.monotonic() of the open question
        # Turns run one at a time in the turn group; stop words and the goal's callbacks run in the goal group,
        # so a stop is handled while a slow grounding turn is still running. goal_lock guards what both touch.
        self.turn_group = MutuallyExclusiveCallbackGroup()
        self.goal_group = MutuallyExclusiveCallbackGroup()
        self.goal_lock = threading.Lock()
        self.goal_handle = None          # accepted, running goal
        self.goal_pending = False        # sent, not yet accepted
        self.contact_lost = 0            # times the server vanished under a goal; older goals' answers are void
        self.stops = 0                   # stop commands heard; a turn (or goal) begun before the latest one is void
        self.turn_running = False
        self.robot_speaking = False      # /speech/speaking: tts_node is talking
        self.result_pub = self.say_pub = None
        self.subs = []
        self.action = None

    def on_configure(self, state) -> TransitionCallbackReturn:
        from koba_ros.grounding.grounder import Grounder

        try:
            sensor_qos(self.objects_reliability)
            require_positive(question_timeout_s=self.question_timeout)
            check_settings(self.settings, self.min_confidence)
            self.grounder = Grounder(self.model_path or None)
            if self.settings.crop_veto > 0:   # a missing or foreign file fails here, not at the first instruction
                crop_kinds.load_cached(self.settings.crop_kinds or str(crop_kinds.default_path()))
        except (KobaError, ValueError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.result_pub = self.create_lifecycle_publisher(GroundingResult, "/grounding/result", 10)
        self.say_pub = self.create_lifecycle_publisher(String, "/speech/say", 10)
        self.action = ActionClient(self, PickPlace, self.action_name, callback_group=self.goal_group)
        # A server that vanishes (picker_node died) never answers a goal it holds: watch for it.
        self.arm_watch = self.create_timer(1.0, self.check_arm, callback_group=self.goal_group)
        self.get_logger().info(f"grounding model loaded ({self.grounder.encoder_kind} text encoder)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        turn, goal = self.turn_group, self.goal_group
        self.subs = [
            self.create_subscription(String, "/instruction", lambda m: self.on_text(m.data), 10, callback_group=turn),
            self.create_subscription(Utterance, "/speech/utterance", self.on_utterance, 10, callback_group=turn),
            self.create_subscription(String, "/instruction", lambda m: self.on_stop(m.data), 10, callback_group=goal),
            self.create_subscription(Utterance, "/speech/utterance", self.on_stop_utterance, 10, callback_group=goal),
            self.create_subscription(SpeakingState, "/speech/speaking", self.on_speaking,
                                     QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL),
                                     callback_group=goal),
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
        try:
            self.objects = msg_to_objects(msg)
        except KobaError as exc:      # e.g. a NaN size from a broken publisher: the last good scene stands
            self.get_logger().warning(f"/perception/objects dropped, keeping the previous objects: {exc}",
                                      throttle_duration_sec=5.0)

    def on_utterance(self, msg: Utterance) -> None:
        if msg.confidence >= self.min_confidence:
            self.on_text(msg.text)

    def on_speaking(self, msg: SpeakingState) -> None:
        self.robot_speaking = msg.speaking

    def on_stop_utterance(self, msg: Utterance) -> None:
        if msg.confidence < self.min_confidence:
            return
        if self.robot_speaking and self.is_stop(msg.text):
            with self.goal_lock:
                busy = self.goal_handle is not None or self.goal_pending or self.turn_running
            if not busy:   # only a question is open, or nothing: its "stop" may well be the robot's own voice
                self.get_logger().info("a stop heard while the robot talked, with nothing moving: taken for its "
                                       "own voice (say it again once the robot is quiet)")
                return
        self.on_stop(msg.text)

    def on_text(self, text: str) -> None:
        """A dialogue turn (turn group). Stop words are the goal group's business, never an instruction."""
        if self.is_stop(text):
            return
        with self.goal_lock:
            stops = self.stops
            self.turn_running = True
        try:
            self.respond(text, stops)
        except KobaError as exc:      # e.g. objects whose features do not fit the model
            self.get_logger().error(str(exc))
            self.say(f"Sorry, I can't do that: {exc}")
        except Exception as exc:      # a bug in the grounding core must not take the node down; state stays
            self.get_logger().error(f"grounding turn failed on {text!r:.80}: {reason(exc)}")
            self.say(FAILED_REPLY)
        finally:
            self.turn_running = False

    def respond(self, text: str, stops: int) -> None:  # not "handle": rclpy Node owns that name
        dialogue = self.dialogue
        if dialogue is not None and dialogue.pending and time.monotonic() - self.asked_at > self.question_timeout:
            self.get_logger().info(f"the question asked {time.monotonic() - self.asked_at:.0f} s ago has expired; "
                                   f"{text!r:.60} is a new instruction")
            dialogue = None
        if dialogue is not None and dialogue.pending:
            reply = dialogue.answer(text)
        else:
            dialogue = Dialogue(self.grounder, self.objects, self.settings)
            reply = dialogue.start(text)
        with self.goal_lock:
            if self.stops != stops:       # "stop" came while this turn was thinking: drop its outcome
                self.dialogue = None
                return
            if reply.status == "done" and not self.action.server_is_ready():   # never announce a move not sent
                self.get_logger().warning(f"no PickPlace server on {self.action_name}; goal not sent")
                self.give_up_goal()   # a goal still running there is lost too: say that first
                reply = Reply("rejected", "I can't reach the arm right now.", reply.target, reply.destination,
                              confidence=reply.confidence)
            self.publish_result(text, reply, dialogue.objects)
            self.say(reply.text)
            if reply.status == "done":
                self.send_goal(dialogue.objects[reply.target], reply.destination)
            self.dialogue = dialogue if reply.status == "question" else None
            self.asked_at = time.monotonic()

    def on_stop(self, text: str) -> None:
        """Stop / cancel (goal group): cancel the running goal, or the one waiting to be accepted, or the open
        question, or the turn still being thought about -- without waiting for that turn to finish."""
        if not self.is_stop(text):
            return
        with self.goal_lock:
            self.stops += 1
            moving = self.goal_handle is not None or self.goal_pending
            # Both can hold at once: the picker frees itself before the last goal's result arrives here, so the next
            # goal can be on its way while the last one's handle is still set.
            if self.goal_handle is not None:
                self.goal_handle.cancel_goal_async()
            # A goal still waiting to be accepted is cancelled in on_goal_response, as soon as it is (it sees
            # `stops` has grown since it was sent).
            talking = self.turn_running or (self.dialogue is not None and self.dialogue.pending)
            self.dialogue = None
            if moving:
                self.say(HOLDING_REPLY)
            elif talking:
                self.publish_result(text, Reply("cancelled", "Okay, I won't move anything."), [])
                self.say("Okay, I won't move anything.")
            else:
                self.say("Okay. Nothing is moving.")

    def is_stop(self, text: str) -> bool:
        """A stop (dialogue.cancels: a stop word at any length, not "never mind, <a new instruction>"); while a goal
        runs or waits to be accepted, any stop word at all: "never mind, put the duck in the top right box" stops the
        arm (say the new instruction again once it holds still)."""
        if cancels(text):
            return True
        with self.goal_lock:
            moving = self.goal_handle is not None or self.goal_pending
        return moving and lexicon.is_cancel(text)

    # --- outputs -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.say_pub.publish(String(data=text))

    def publish_result(self, text: str, reply: Reply, objects) -> None:
        msg = GroundingResult()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "base_link"
        fill_result(msg, text, reply, objects, None)
        self.result_pub.publish(msg)

    def send_goal(self, obj, destination: str) -> None:
        """Send the PickPlace goal (called with goal_lock held)."""
        goal = PickPlace.Goal(object_id=obj.id, destination=destination)
        goal.pick_position.x, goal.pick_position.y, goal.pick_position.z = (float(v) for v in obj.position)
        goal.object_size.x, goal.object_size.y, goal.object_size.z = (float(v) for v in obj.size)
        if not self.action.server_is_ready():
            self.get_logger().warning(f"no PickPlace server on {self.action_name}; goal not sent")
            self.say("I can't reach the arm right now.")
            return
        self.goal_pending = True
        lost, stops = self.contact_lost, self.stops
        self.action.send_goal_async(goal).add_done_callback(lambda future: self.on_goal_response(future, lost, stops))

    def check_arm(self) -> None:
        """Timer (goal group): a goal pending or running on a server that is gone gets no answer, ever; say so once
        and forget it (its answer, should one come late after all, is ignored)."""
        with self.goal_lock:
            if (self.goal_handle is not None or self.goal_pending) and not self.action.server_is_ready():
                self.give_up_goal()

    def give_up_goal(self) -> None:
        """Forget the pending or running goal of a server that is gone, saying so (called with goal_lock held)."""
        if self.goal_handle is not None or self.goal_pending:
            self.goal_handle, self.goal_pending = None, False
            self.contact_lost += 1
            self.get_logger().error(f"the PickPlace server on {self.action_name} is gone; the goal is given up")
            self.say("I lost contact with the arm; the move was not finished.")

    def on_goal_response(self, future, lost: int, stops: int | None = None) -> None:
        """`stops`: self.stops when the goal was sent (None: as now). Counted per goal, not one flag: a flag set by a
        stop while goal A waited was cleared by sending goal B before A's acceptance came, and A then moved."""
        handle = future.result()
        with self.goal_lock:
            if lost != self.contact_lost:   # given up on (check_arm)
                return
            self.goal_pending = False
            if not handle.accepted:
                self.say("The arm refused that move.")
                return
            self.goal_handle = handle
            if stops is not None and stops != self.stops:   # a stop came while the goal waited for acceptance
                handle.cancel_goal_async()
            lost = self.contact_lost
        handle.get_result_async().add_done_callback(lambda result: self.on_goal_result(result, lost, handle))

    def on_goal_result(self, future, lost: int, handle) -> None:
        with self.goal_lock:
            if lost != self.contact_lost:   # given up on (check_arm)
                return
            # Only this goal's own handle: a newer goal accepted before this result arrived is still moving, and
            # "stop" must still find it.
            if self.goal_handle is handle:
                self.goal_handle = None
        response = future.result()
        if response.status == GoalStatus.STATUS_CANCELED:
            # a stop after the release stops the arm on its way back; the object is already down (picker.py)
            self.say(f"{CANCELLED_REPLY} {PLACED_BEFORE_STOP}" if response.result.success else CANCELLED_REPLY)
        else:
            self.say("Done." if response.result.success else f"I couldn't finish: {response.result.message}")


def main(args=None):
    run_node(GroundingNode, args)


if __name__ == "__main__":
    main()
