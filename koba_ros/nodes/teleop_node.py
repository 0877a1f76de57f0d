"""teleop_node: spoken commands → arm motion through the JointTrajectoryController topic interface.

Listens to /speech/utterance (koba_interfaces/Utterance) and /teleop/command (std_msgs/String, typed),
reads /joint_states, publishes trajectory_msgs/JointTrajectory on /arm_controller/joint_trajectory,
a gripper width (std_msgs/Float64, m) on /gripper/command and its replies on /speech/say.
"stop" publishes an empty trajectory (the controller holds where the arm is) and the fingers' width from /joint_states
(the gripper holds too) at once; a plan that finishes after a stop is dropped. A stop heard again within
STOP_REPEAT_S with no command in between (an early "stop", then its utterance's "stop moving") holds again but is not
answered again. Commands are taken in the order they arrive, one callback at a time (parsing is fast), and a move is
planned on a worker thread, so a stop never waits for a plan and a move said before a stop can never take a newer
place than it (with the callbacks side by side on the pool, a jog's thread that started late could count as the later
command and move the arm after the stop: found by a review, session 26).
A spoken stop is obeyed whatever its confidence (min_confidence only gates the other commands). A jog's reply, said
once the motion is over, says how far short the tool ended when something was in the way.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from koba_interfaces.msg import Utterance
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from koba_ros.errors import KobaError, reason
from koba_ros.nodes.params import declare
from koba_ros.nodes.runtime import run_node
from koba_ros.picking.kinematics import ARM_JOINTS
from koba_ros.sim.cell import FINGER_JOINTS
from koba_ros.sim.trajectory_messages import trajectory_to_msg
from koba_ros.teleop.commands import STOP_REPEAT_S, Stop, is_stop, parse_command
from koba_ros.teleop.jog import STOP_REPLY, JogPlanner, TeleopPlan
from koba_ros.teleop.motions import MotionLog, StopReplies

# Not "... its joint states stopped.": speech_node listens for "stop" while the robot talks, and heard one in that.
STALE_STATES = "I do not know where my arm is now: its joint states are out of date."
# Not "Sorry, something went wrong; ...": en-gb's "something went wrong" was heard as a stop (session 30).
FAILED = "Sorry, that did not work; please try again."


class TeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__("teleop_node", **kwargs)
        self.min_confidence = declare(self, "min_confidence", 0.3, "Ignore utterances less confident than this.")
        if not 0.0 <= self.min_confidence <= 1.0:   # NaN fails too: it (or > 1) silently ignored every command
            raise KobaError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        self.speak_replies = declare(self, "speak_replies", True, "Say what the robot does (or why not).")
        self.state_timeout = declare(self, "joint_state_timeout", 2.0, "Plan no move from /joint_states older "
                                     "than this, s (the arm may have moved since).")
        if not self.state_timeout > 0:
            raise KobaError(f"joint_state_timeout must be > 0, got {self.state_timeout}")
        self.planner = JogPlanner()
        self.joints = None
        self.joints_at = 0.0         # time.monotonic() of the last good /joint_states
        self.finger_width = None     # m between the fingers in the last /joint_states that had them
        self.fingers_at = 0.0
        self.gripper_target = None   # m: the width last sent on /gripper/command (guarded by generation_lock)
        self.motions = MotionLog()   # guarded by generation_lock
        self.generation = 0          # bumped by every command that parses; a plan from an older one is dropped
        self.generation_lock = threading.Lock()
        self.stop_replies = StopReplies(STOP_REPEAT_S)   # guarded by generation_lock
        self.plan_lock = threading.Lock()   # one plan at a time: the IK client is not thread-safe
        self.planning = ThreadPoolExecutor(1, thread_name_prefix="teleop_plan")
        self.traj_pub = self.create_publisher(JointTrajectoryMsg, "/arm_controller/joint_trajectory", 10)
        self.gripper_pub = self.create_publisher(Float64, "/gripper/command", 10)
        self.say_pub = self.create_publisher(String, "/speech/say", 10)
        self.create_subscription(JointState, "/joint_states", self.on_joints, 10,
                                 callback_group=ReentrantCallbackGroup())
        in_order = MutuallyExclusiveCallbackGroup()   # spoken and typed commands, one at a time, as they arrive
        self.create_subscription(Utterance, "/speech/utterance", self.on_utterance, 10, callback_group=in_order)
        self.create_subscription(String, "/teleop/command", lambda m: self.run_command(m.data, plan_later=True), 10,
                                 callback_group=in_order)

    def on_joints(self, msg: JointState) -> None:
        position = dict(zip(msg.name, msg.position, strict=False))
        if all(n in position for n in ARM_JOINTS):
            joints = [position[n] for n in ARM_JOINTS]
            if all(math.isfinite(q) for q in joints):
                self.joints, self.joints_at = joints, time.monotonic()
            else:  # a broken driver: planning from NaN would send NaN, and an older state may no longer be true
                self.joints = None
                self.get_logger().error("/joint_states has non-finite arm positions; not moving",
                                        throttle_duration_sec=5.0)
        fingers = [position.get(n) for n in FINGER_JOINTS]
        if all(f is not None and math.isfinite(f) for f in fingers):
            self.finger_width, self.fingers_at = float(sum(fingers)), time.monotonic()

    def on_utterance(self, msg: Utterance) -> None:
        # "stop" always wins: it is obeyed whatever its ASR confidence (a missed stop costs more than a false one).
        if msg.text and (msg.confidence >= self.min_confidence or is_stop(msg.text)):
            self.run_command(msg.text, plan_later=True)

    def run_command(self, text: str, plan_later: bool = False) -> None:
        """Parse `text` and take its place in the order of commands; a stop is obeyed at once. A move is planned and
        sent here, or with `plan_later` on the planning thread (the callbacks: the next command must not wait)."""
        taken = None
        with self.failures_logged(text):
            taken = self._take(text)
        if taken is None:
            return
        if plan_later:
            self.planning.submit(self._move_logged, text, *taken)
        else:
            self._move_logged(text, *taken)

    def _move_logged(self, text: str, command, generation: int) -> None:
        with self.failures_logged(text):
            self._move(command, generation)

    @contextlib.contextmanager
    def failures_logged(self, text: str):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - one bad command (a bug in parse or plan) must not end the node
            self.get_logger().error(f"teleop command failed on {text!r:.80}: {reason(exc)}")
            self.say_when_still(FAILED)

    def _take(self, text: str):
        """(command, generation) of a move to plan; None for junk (it cancels nothing: only a command that parses
        takes a generation) and for a stop, obeyed here."""
        try:
            command = parse_command(text)
        except KobaError as exc:
            return self.say_when_still(str(exc))
        with self.generation_lock:
            self.generation += 1
            generation = self.generation
        if isinstance(command, Stop):
            with self.generation_lock:  # after any jog whose generation check passed has been published
                self.traj_pub.publish(JointTrajectoryMsg(joint_names=list(ARM_JOINTS)))   # empty: hold here
                # The gripper holds at its width now (it went on closing or opening); not at a width from
                # joint states that stopped coming, which could open it on what it holds.
                hold = self.finger_width is not None and time.monotonic() - self.fingers_at <= self.state_timeout
                if hold:
                    self.gripper_pub.publish(Float64(data=self.finger_width))
                    self.gripper_target = self.finger_width
                now = time.monotonic()
                self.motions.stop(now, gripper=hold)
                # The hold is sent again all the same ("stop" always wins); only the reply may not be (StopReplies)
                answer = self.stop_replies.answer(generation, now)
            return self.reply(STOP_REPLY) if answer else None
        return command, generation

    def _move(self, command, generation: int) -> None:
        with self.generation_lock:
            if generation != self.generation:
                return None   # a newer command came while this one waited for the planner: do not plan it at all
        if self.joints is None:
            return self.say_when_still("I do not know where my arm is yet.")
        if time.monotonic() - self.joints_at > self.state_timeout:   # the driver stopped: the arm may be elsewhere
            return self.say_when_still(STALE_STATES)
        # The fingers' width for a jog's wall check: not known when their joint states stopped coming (the planner
        # then assumes them open, and excuses no touch that only open fingers make).
        fingers = self.finger_width if time.monotonic() - self.fingers_at <= self.state_timeout else None
        with self.plan_lock:
            try:
                with self.generation_lock:
                    target = self.gripper_target
                plan = self.planner.plan(command, self.joints, fingers, target)
            except KobaError as exc:
                return self.say_when_still(str(exc))
            message = trajectory_to_msg(plan.trajectory) if plan.trajectory is not None else None
            # The check and the publish under the lock a stop takes to publish: a stop either comes first (this
            # plan is dropped) or is published after it (the arm holds).
            with self.generation_lock:
                if generation != self.generation:
                    return None   # a newer command (a stop) arrived while planning
                if message is not None:
                    self.traj_pub.publish(message)
                if plan.gripper_width is not None:
                    self.gripper_pub.publish(Float64(data=float(plan.gripper_width)))
                    self.gripper_target = float(plan.gripper_width)
                token = self.motions.send(time.monotonic(), plan.trajectory.times[-1] if message is not None else None,
                                          gripper=plan.gripper_width is not None)
        self.say_when_still(plan.reply, token, plan)

    def say_when_still(self, text: str, token: tuple[str, int] | None = None, plan: TeleopPlan | None = None) -> None:
        """Say `text` once the last motion sent is over (at once if none runs); with `token`, only if that motion
        was not replaced or stopped meanwhile (teleop/motions.py says why). With `plan`, what is said is decided then:
        a jog that ended short of its target says so instead of "Moved ..."."""
        def fire(timer=None):
            if timer is not None:
                self.destroy_timer(timer)   # once
            with self.generation_lock:
                current = self.motions.current(token)
            if current:
                with self.failures_logged("the reply"):
                    self.reply(self.arrival_reply(plan) if plan is not None else text)

        with self.generation_lock:
            delay_s = self.motions.wait(time.monotonic())
        if delay_s <= 0:
            return fire()
        timer = self.create_timer(delay_s, lambda: fire(timer))

    def arrival_reply(self, plan: TeleopPlan) -> str:
        if plan.target is None:
            return plan.reply
        joints, fresh = self.joints, time.monotonic() - self.joints_at <= self.state_timeout
        if joints is None or not fresh:
            return STALE_STATES
        with self.plan_lock:   # the planner's kinematics client is not thread-safe
            return self.planner.arrival_reply(plan, joints)

    def reply(self, text: str) -> None:
        self.get_logger().info(text)
        if self.speak_replies:
            self.say_pub.publish(String(data=text))

    def destroy_node(self):
        if not hasattr(self, "planning"):   # a bad parameter ended __init__ before anything of ours was made
            return super().destroy_node()
        self.planning.shutdown(wait=True, cancel_futures=True)   # before the planner it uses is closed
        self.planner.close()
        return super().destroy_node()


def main(args=None):
    run_node(TeleopNode, args)


if __name__ == "__main__":
    main()
