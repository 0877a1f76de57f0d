"""picker_node: the PickPlace action server (koba_interfaces/action/PickPlace) over any JointTrajectory controller.

Commands the arm on /arm_controller/joint_trajectory (trajectory_msgs/JointTrajectory; an empty one stops it),
the gripper on /gripper/command (std_msgs/Float64 width, m), reads /joint_states, and uses
/perception/objects to resolve object ids, re-find a dropped object and verify the placement.
"""
import math
import threading
import time

import numpy as np
from koba_interfaces.action import PickPlace
from koba_interfaces.msg import DetectedObjectArray
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, require_positive
from koba_ros.nodes.runtime import run_node
from koba_ros.perception.messages import msg_to_objects
from koba_ros.picking.kinematics import ARM_JOINTS
from koba_ros.picking.picker import Picker, Target
from koba_ros.picking.placement import place_among
from koba_ros.sim.trajectory import JointTrajectory
from koba_ros.sim.trajectory_messages import trajectory_to_msg

FINGERS = ("panda_finger_joint1", "panda_finger_joint2")
NEW_OBJECT_DISTANCE = 0.03  # m: farther than this from everything that was in the box = the placed object
SAME_OBJECT_DISTANCE = 0.03  # m: a pick_position this close to the perceived object with the goal's id is that object
REACHED_TOLERANCE = 0.05    # rad: the arm is at a trajectory's end when every joint is this close
STILL_MESSAGES = 25         # /joint_states at rest (blocked by contact) that also end a move (0.5 s at 50 Hz)
STALL_MESSAGES = 200        # ... at rest far from the end: the controller did not follow


class TopicArm:
    """The Picker's Arm protocol over ros2_control-style topics."""

    def __init__(self, node: Node, group, state_timeout: float):
        self.node, self.state_timeout = node, state_timeout
        self.traj_pub = node.create_publisher(JointTrajectoryMsg, "/arm_controller/joint_trajectory", 10)
        self.grip_pub = node.create_publisher(Float64, "/gripper/command", 10)
        self.state: dict[str, float] = {}
        self.heard: dict[str, float] = {}   # joint -> time.monotonic() of the last /joint_states naming it
        self.messages = 0   # /joint_states received: rest is counted in messages (a stalled publisher is no rest)
        self.lock = threading.Lock()
        node.create_subscription(JointState, "/joint_states", self.on_state, 10, callback_group=group)

    def on_state(self, msg: JointState) -> None:
        if len(msg.position) == 0:   # allowed (velocities or efforts only), but no news of where the joints are
            return
        if len(msg.position) != len(msg.name):   # which position is which joint's is anyone's guess
            self.node.get_logger().warning(f"/joint_states dropped: {len(msg.name)} names but {len(msg.position)} "
                                           "positions", throttle_duration_sec=5.0)
            return
        with self.lock:
            self.state.update(zip(msg.name, msg.position, strict=True))
            now = time.monotonic()
            self.heard.update((name, now) for name in msg.name)
            self.messages += 1

    def _positions(self, names) -> np.ndarray:
        deadline = time.monotonic() + self.state_timeout
        while True:
            with self.lock:
                if all(n in self.state for n in names):
                    q = np.array([self.state[n] for n in names])
                    age = time.monotonic() - min(self.heard[n] for n in names)
                    break
            if time.monotonic() > deadline:
                raise KobaError(f"no /joint_states for {', '.join(names)} within {self.state_timeout:g} s")
            time.sleep(0.05)
        if age > self.state_timeout:   # the publisher stopped (mid-move): rest and stall are counted in messages
            raise KobaError(f"no /joint_states for {self.state_timeout:g} s: is the arm's controller running?")
        if not np.all(np.isfinite(q)):
            raise KobaError("/joint_states has NaN positions; not moving")
        return q

    def joint_positions(self) -> np.ndarray:
        return self._positions(ARM_JOINTS)

    def execute(self, traj: JointTrajectory, cancel: threading.Event) -> bool:
        if cancel.is_set():  # never start a motion that is already cancelled
            return False
        self.traj_pub.publish(trajectory_to_msg(traj))
        start, goal = time.monotonic(), traj.positions[-1]
        # The controller may run slower than the wall clock (a loaded simulator): wait while the arm still moves.
        # An arm that has come to rest just short of the end (fingers touching the object or the floor) is done.
        last, last_move = None, self.messages
        while True:
            if cancel.wait(0.02):
                self.traj_pub.publish(JointTrajectoryMsg(joint_names=list(ARM_JOINTS)))   # empty: stop
                return False
            try:
                q = self.joint_positions()
            except KobaError:   # no /joint_states any more: stop whatever may still be moving the arm
                self.traj_pub.publish(JointTrajectoryMsg(joint_names=list(ARM_JOINTS)))
                raise
            if last is None or np.max(np.abs(q - last)) > 1e-3:
                last, last_move = q, self.messages
            if time.monotonic() - start < traj.times[-1]:
                continue
            error = np.max(np.abs(q - goal))
            resting = self.messages - last_move
            if error < REACHED_TOLERANCE or (resting > STILL_MESSAGES and error < 3 * REACHED_TOLERANCE):
                return True
            if resting > STALL_MESSAGES:
                raise KobaError("the arm stopped short of its trajectory's end (did the controller reject it?)")

    def gripper(self, width: float, cancel: threading.Event) -> float:
        if cancel.is_set():
            return float(self._positions(FINGERS).sum())
        self.grip_pub.publish(Float64(data=float(width)))
        last, start = self._positions(FINGERS).sum(), time.monotonic()
        while not cancel.wait(0.1):
            now = self._positions(FINGERS).sum()
            if (abs(now - last) < 2e-4 and time.monotonic() - start > 0.3) or time.monotonic() - start > 3.0:
                return float(now)
            last = now
        return float(last)


class PickerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("picker_node", **kwargs)
        state_timeout = declare(self, "joint_state_timeout", 5.0, "Wait this long for /joint_states, s.")
        self.frame_latency = declare(self, "frame_latency", 1.0,
                                     "Objects arriving this long after a request can still come from an older frame, "
                                     "s (render + perception pipeline delay).")
        self.perception_timeout = declare(self, "perception_timeout", 5.0,
                                          "Wait this long for a fresh /perception/objects, s.")
        # NaN would wait forever for /joint_states (no comparison with it is true), 0 fail every goal.
        require_positive(joint_state_timeout=state_timeout, perception_timeout=self.perception_timeout)
        if not 0.0 <= self.frame_latency < math.inf:
            raise KobaError(f"frame_latency must be a finite number >= 0, got {self.frame_latency}")
        group = ReentrantCallbackGroup()
        self.arm = TopicArm(self, group, state_timeout)
        self.picker = Picker(self.arm)
        self.objects, self.objects_time = [], 0.0
        self.busy = threading.Lock()
        self.cancels: dict[bytes, threading.Event] = {}
        self.stopping = False   # stop_work was called: the node is shutting down
        self.create_subscription(DetectedObjectArray, "/perception/objects", self.on_objects, 10, callback_group=group)
        self.server = ActionServer(self, PickPlace, "pick_place", self.execute, goal_callback=self.on_goal,
                                   cancel_callback=self.on_cancel, callback_group=group)

    def on_objects(self, msg: DetectedObjectArray) -> None:
        try:
            self.objects, self.objects_time = msg_to_objects(msg), time.monotonic()
        except KobaError as exc:  # a NaN yaw or a malformed attribute: the last good objects stand
            self.get_logger().warning(f"/perception/objects dropped, keeping the previous objects: {exc}",
                                      throttle_duration_sec=5.0)

    def fresh_objects(self, cancel: threading.Event | None = None):
        """The first /perception/objects that arrives from now on (the arm has moved: older ones are stale); None
        after perception_timeout, or at once when the goal is cancelled meanwhile."""
        asked, cancel = time.monotonic(), cancel or threading.Event()
        while time.monotonic() - asked < self.perception_timeout:
            # Objects must come from a frame captured after the ask; frames already in the render and perception
            # pipeline arrive up to a few hundred ms later on a loaded CPU.
            if self.objects_time > asked + self.frame_latency:
                return self.objects
            if cancel.wait(0.05):
                return None
        return None

    def on_goal(self, goal) -> GoalResponse:
        return GoalResponse.REJECT if self.busy.locked() else GoalResponse.ACCEPT

    def cancel_event(self, goal_handle) -> threading.Event:
        """The goal's cancel flag, made by whichever comes first: its execute or its cancel request. rclpy runs
        execute as a task of its own, so a cancel sent right after acceptance (grounding_node does, for a "stop"
        said while the goal was on its way) may well come first; it must not be lost. Keyed by the goal's UUID."""
        return self.cancels.setdefault(bytes(goal_handle.goal_id.uuid), threading.Event())

    def on_cancel(self, goal_handle) -> CancelResponse:
        self.cancel_event(goal_handle).set()
        return CancelResponse.ACCEPT

    def target_for(self, goal, cancel: threading.Event | None = None) -> Target | None:
        """The goal's object: its pick_position when given, else the perceived object with that id. An id not seen
        yet gets one fresh /perception/objects to appear in: a client that read it from perception a moment ago may
        be ahead of this node's subscription (just started, or a loaded machine)."""
        p, s = goal.pick_position, goal.object_size
        known = {o.id: o for o in self.objects}
        if not any((p.x, p.y, p.z)) and goal.object_id not in known:
            known = {o.id: o for o in self.fresh_objects(cancel) or []}
        if any((p.x, p.y, p.z)):
            position, size = (p.x, p.y, p.z), (s.x, s.y, s.z)
            own = _same_object(known.get(goal.object_id), position)
            if own is None:
                return Target(position, size)
            return Target(position, size if any(size) else tuple(own.size), own.yaw, own.width)
        if goal.object_id in known:
            o = known[goal.object_id]
            return Target.of(o)
        return None

    def execute(self, goal_handle):
        from koba_ros.picking.picker import PickResult

        goal = goal_handle.request
        cancel = self.cancel_event(goal_handle)
        if goal_handle.is_cancel_requested:
            cancel.set()
        try:
            # on_goal's check comes before execute (a task of its own) takes `busy`: two goals sent together were
            # both accepted now and then, the second run after the first, on a view of the table from before it. The
            # one that finds the picker taken is refused here instead (a reservation made in on_goal would stay taken
            # for good when rclpy fails to send the acceptance and never runs execute).
            if self.busy.acquire(blocking=False):
                try:
                    outcome = self.run_goal(goal, goal_handle, cancel)
                finally:
                    self.busy.release()
            else:
                outcome = PickResult(False, "rejected: the picker is busy with another goal; the arm did not move")
            if cancel.is_set() and (goal_handle.is_cancel_requested or not self.stopping):
                goal_handle.canceled()
            elif cancel.is_set():   # stop_work: the node is shutting down (a cancelled state needs a client's request)
                goal_handle.abort()
                outcome = PickResult(False, f"stopped: picker_node is shutting down ({outcome.message})")
            elif outcome.success:
                goal_handle.succeed()
            else:
                goal_handle.abort()
        finally:
            self.cancels.pop(bytes(goal_handle.goal_id.uuid), None)  # the goal has ended: no cancel can come now
        self.get_logger().info(f"pick {goal.object_id} -> {goal.destination!r:.40}: {outcome.message}")
        return PickPlace.Result(success=outcome.success, message=outcome.message)

    def run_goal(self, goal, goal_handle, cancel):
        from koba_ros.picking.picker import PickResult

        target = self.target_for(goal, cancel)
        if target is None and cancel.is_set():   # the wait for its id ended at the cancel
            return PickResult(False, "cancelled before the pick started; the arm did not move")
        if target is None:
            return PickResult(False, f"rejected: unknown object id {goal.object_id} and no pick_position")

        def progress(stage, fraction):
            goal_handle.publish_feedback(PickPlace.Feedback(stage=stage, progress=float(fraction)))

        perceived = self.objects   # one snapshot: the subscription may replace the list meanwhile
        # Where everything but the target was before the pick: a neighbour is no dropped object.
        seen = [o.position for o in perceived if _apart(o.position, [target.position])]

        def locate(last: Target):
            """The dropped object: still where it was, or one seen where nothing was before (not merely the closest
            in size within 15 cm: that was a neighbour as often as not, picked and reported placed)."""
            objects = self.fresh_objects(cancel) or []
            near = [o for o in objects if np.linalg.norm(np.subtract(o.position[:2], last.position[:2])) < 0.15
                    and (not _apart(o.position, [last.position]) or _apart(o.position, seen))]
            best = min(near, key=lambda o: np.linalg.norm(np.subtract(o.size, last.size)), default=None)
            return Target.of(best) if best else None

        own = next((o for o in perceived if o.id == goal.object_id and _same_object(o, target.position) is not None),
                   None)
        # What was in the destination box before: the placed object is the one seen where nothing was. (Its
        # perceived size is no test: a cylinder or brick may land on its side.) Its own old spot is left out: moved
        # within its box, it may well land near where it was.
        before = [o.position[:2] for o in perceived if o.box == goal.destination and o is not own]

        def verify():
            objects = self.fresh_objects(cancel)
            if objects is None:
                return None
            return any(o.box == goal.destination and _apart(o.position, before) for o in objects)

        # Put it down in the roomiest spot of the box, not on (or against) what is already there: an object
        # dropped against another one is seen as one with it, and the check above would call the place a miss.
        try:
            self.picker.check_goal(target, goal.destination)   # before placing: a nonsense size must not size a grid
        except KobaError:
            place_xy = None   # pick_place refuses the goal with its own message
        else:
            place_xy = place_among(goal.destination, perceived, target.size, own.id if own is not None else None)
        return self.picker.pick_place(target, goal.destination, progress=progress, cancel=cancel, locate=locate,
                                      verify=verify, place_xy=place_xy)

    def stop_work(self) -> None:
        """Cancel every running goal (runtime.spin calls this when spinning ends, before it waits for callbacks): the
        arm is sent the stop at once, and the goal ends cancelled, not 5 s later for want of /joint_states."""
        self.stopping = True
        for event in list(self.cancels.values()):
            event.set()

    def destroy_node(self):
        if not hasattr(self, "server"):   # a bad parameter ended __init__ before anything of ours was made
            return super().destroy_node()
        self.stop_work()
        self.server.destroy()
        self.picker.kin.close()
        return super().destroy_node()


def _apart(position, places) -> bool:
    """Whether `position` lies farther than NEW_OBJECT_DISTANCE in x, y from every one of `places`."""
    return all(np.linalg.norm(np.subtract(position[:2], p[:2])) > NEW_OBJECT_DISTANCE for p in places)


def _same_object(obj, position):
    """`obj` when it lies where the goal says (object_id defaults to 0: a position-only goal must not take the yaw
    and size of whatever object 0 is), else None."""
    if obj is None or not np.linalg.norm(np.subtract(obj.position, position)) <= SAME_OBJECT_DISTANCE:  # NaN: None
        return None
    return obj


def main(args=None):
    run_node(PickerNode, args)


if __name__ == "__main__":
    main()
