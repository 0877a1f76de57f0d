"""`koba up GRAPH`: nodes come up on DDS, and Ctrl-C/SIGTERM stop everything."""
import json
import signal
import time

import pytest
from rclpy.node import Node

from koba_ros.bringup import GRAPHS
from test.rostools import processes_with, start_process, stop_process, wait_for_nodes

pytestmark = pytest.mark.ros


def expected_nodes(graph, *args):
    from koba_ros.commands.up import parse_graph_args

    class Args:
        arg = list(args)
        scene = None
        headless = False
        feedback = None

    return {s.name for s in GRAPHS[graph].resolve(**parse_graph_args(Args))}


def start_up(*args):
    proc = start_process("-m", "koba_ros.cli", "up", *args, "--json")
    for line in proc.stdout:  # node logs share the stream; the JSON status is one line of its own
        if line.startswith("{"):
            return proc, json.loads(line)
    raise AssertionError(f"koba up printed no status; exit code {proc.wait()}")


@pytest.mark.parametrize("mode", ["composed", "processes"])
def test_up_starts_graph_and_sigterm_stops_it_cleanly(ros_context, mode):
    extra = ["--processes"] if mode == "processes" else []
    proc, started = start_up("teleop", *extra)
    node = Node("up_watcher", context=ros_context)
    try:
        assert started["status"] == "running" and started["mode"] == mode
        names = expected_nodes("teleop")
        assert set(started["nodes"]) == names
        assert wait_for_nodes(node, names, 30) == names
        import os

        os.killpg(proc.pid, signal.SIGTERM) if mode == "composed" else proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while processes_with("koba_ros.nodes.") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with("koba_ros.nodes.") == [], "orphan node processes"
    finally:
        node.destroy_node()
        stop_process(proc)


def test_up_duration_stops_by_itself():
    proc, started = start_up("teleop", "--duration", "2", "--headless")
    assert started["arguments"]["headless"] == "true"  # the values this run uses, not the graph's defaults
    assert proc.wait(30) == 0


def test_up_list_prints_nodes_and_described_arguments():
    proc = start_process("-m", "koba_ros.cli", "up", "picking", "--list", "--json")
    out = json.loads(proc.stdout.read())
    assert proc.wait(30) == 0
    assert set(out["nodes"]) == expected_nodes("picking")
    assert all(a["description"] for a in out["arguments"].values())


def test_a_crashed_node_stops_the_graph_with_a_one_line_error(ros_context):
    import os

    proc, started = start_up("teleop", "--processes")
    node = Node("crash_watcher", context=ros_context)
    try:
        assert wait_for_nodes(node, {"tts_node"}, 30) == {"tts_node"}
        victims = processes_with("koba_ros.nodes.tts_node")
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        assert proc.wait(30) == 2
        rest = proc.stdout.read()
        assert "koba up: error: node tts_node exited with code -9" in rest
        assert processes_with("koba_ros.nodes.") == []
    finally:
        node.destroy_node()
        stop_process(proc)


def test_stopping_while_node_processes_still_start_and_a_node_failing_to_build_are_quiet(tmp_path):
    """SIGINT reached children still importing torch (a KeyboardInterrupt traceback each); a node whose constructor
    failed printed a second traceback from destroying its half-built self."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "koba_ros.cli", "up", "maze_training", "--processes", "--duration",
                          "1", "--feedback", "none"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stdout + run.stderr, run.stderr[-2000:]
    scene = tmp_path / "bad.json"
    scene.write_text('{"seed": 1, "objects": [{"name": "duck", "box": "middle"}]}')
    run = subprocess.run([sys.executable, "-m", "koba_ros.nodes.sim_node", "--ros-args", "-p", f"scene:={scene}"],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in run.stderr.splitlines() if not line.startswith("pybullet build time")]
    assert run.returncode == 1 and lines == [f"SimNode: {scene}: object 0: unknown box 'middle'; boxes: top_left, "
                                             "top_right, bottom_left, bottom_right"], run.stderr[-2000:]
