"""The picking cell over real DDS: its graph nodes in a child process, one PickPlace goal from here."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from koba_ros.nodes.runtime import shutdown_executor
from koba_ros.sim.layout import box_regions
from test.rostools import stop_process

pytestmark = pytest.mark.ros


# The cell part of the picking graph (bringup's own node specs: sim_node, perception_node, picker_node), started
# the way `koba up picking --headless` starts it; the language nodes are other tests' business.
START_CELL = """
import threading
from koba_ros.bringup import CELL_ARGS, _cell
from koba_ros.launcher import run_composed
stop = threading.Event()
timer = threading.Timer(240, stop.set)
timer.daemon = True  # else the process outlives the graph by the timer's 240 s after a Ctrl-C
timer.start()
run_composed(_cell({**{a.name: a.default for a in CELL_ARGS}, "headless": "true"}), stop=stop)
"""


@pytest.fixture
def picking_graph(tmp_path):
    log = open(tmp_path / "graph.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", START_CELL], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    proc.log_path = tmp_path / "graph.log"
    yield proc
    log.close()
    assert stop_process(proc, timeout=15) == 0, "the cell did not stop cleanly on SIGINT:\n" + \
        proc.log_path.read_text()[-2000:]


def spin_until(executor, condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        executor.spin_once(timeout_sec=0.1)
    return condition()


def test_one_pick_over_dds(ros_context, picking_graph):
    import rclpy
    from koba_interfaces.action import PickPlace
    from koba_interfaces.msg import DetectedObjectArray
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    node = rclpy.create_node("pick_test", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        latest = {}
        node.create_subscription(DetectedObjectArray, "/perception/objects", lambda m: latest.update(objects=m), 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, "/sim/ground_truth", lambda m: latest.update(truth=json.loads(m.data)),
                                 latched)
        client = ActionClient(node, PickPlace, "pick_place")
        assert spin_until(executor, lambda: "objects" in latest and client.server_is_ready(), 90), \
            "no perception or no pick_place server"
        assert len(latest["objects"].objects) == 8            # sim/scenes/demo.json
        # Scene object 0 (the red cube) sits at this offset in top_left; find it among the perceived objects.
        where = np.array(box_regions()["top_left"].offset_to_xy(-0.04, 0.03))
        cube = min(latest["objects"].objects, key=lambda o: np.hypot(o.position.x - where[0], o.position.y - where[1]))
        assert cube.box == "top_left"

        # The picker succeeds on 98% of benchmark picks in-process; over DDS on a loaded 2-core machine a pick now
        # and then ends as a reported miss (docs/picking.md, what is left). What this test pins down is the
        # transport (goal, every stage as feedback, a result) and the end state by simulator ground truth, so a
        # reported miss of an object still in its box is retried, as a user would.
        messages = []
        for _attempt in range(3):
            stages: list[str] = []
            goal = PickPlace.Goal(object_id=cube.id, destination="top_right")
            future = client.send_goal_async(goal, feedback_callback=lambda f, seen=stages: seen.append(
                f.feedback.stage))
            assert spin_until(executor, future.done, 10) and future.result().accepted
            result = future.result().get_result_async()
            assert spin_until(executor, result.done, 150), f"no result; stages so far {stages}"
            spin_until(executor, lambda: False, 0.5)  # feedback still queued when the result was taken first
            picker_log = [line for line in picking_graph.log_path.read_text().splitlines() if "picker_node" in line]
            if result.result().result.success:
                assert stages[:1] == ["approach"] and "release" in stages, (stages, picker_log[-6:])
            messages.append(result.result().result.message)
            latest.pop("truth", None)
            assert spin_until(executor, lambda: "truth" in latest, 10)
            # The picker's own verdict (perception after going home) must agree with the simulator's ground truth.
            assert result.result().result.success == (latest["truth"]["boxes"][0] == "top_right"), \
                (result.result().result.message, latest["truth"], picker_log[-6:])
            if result.result().result.success or latest["truth"]["boxes"][0] != "top_left":
                break
            latest.pop("objects", None)
            assert spin_until(executor, lambda: "objects" in latest, 30)
            cube = min(latest["objects"].objects,
                       key=lambda o: np.hypot(o.position.x - where[0], o.position.y - where[1]))
        latest.pop("truth", None)
        assert spin_until(executor, lambda: "truth" in latest, 10)
        assert latest["truth"]["boxes"][0] == "top_right", (messages, latest["truth"])  # simulator ground truth
    finally:
        shutdown_executor(executor)  # not executor.shutdown(): rclpy 9.1 bug, see runtime.shutdown_executor
        node.destroy_node()
