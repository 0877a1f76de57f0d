"""Session 25 review of `koba up` and node parameters: a crashing callback in a composed graph, integers for floats,
a malformed config file, misspelt parameter names and rates of zero are each one line."""
import signal
import subprocess
import sys

import numpy as np
import pytest

from koba_ros.bringup import NodeSpec
from koba_ros.errors import KobaError

# A graph of one probe node, started by `koba up` composed; argv[1] says what the probe is given.
PROBE_GRAPH = r"""
import json, sys
from dataclasses import dataclass
from rclpy.node import Node
import koba_ros.bringup as bringup
from koba_ros.cli import main
from koba_ros.nodes.params import declare

class Probe(Node):
    def __init__(self, **kwargs):
        super().__init__("probe", **kwargs)
        self.rate = declare(self, "rate", 5.0, "A float.")
        self.pose = declare(self, "pose", [1.0, 0.0, 0.5], "Floats.")
        self.crash = declare(self, "crash", False, "Raise in a timer callback.")
        self.create_timer(0.2, self.tick)
    def tick(self):
        if self.crash:
            raise ZeroDivisionError("a bug in one node's callback")
        print(json.dumps({"rate": self.rate, "pose": list(self.pose)}), flush=True)

@dataclass(frozen=True)
class Spec(bringup.NodeSpec):
    def load_class(self):
        return Probe

parameters = json.loads(sys.argv[1])
bringup.GRAPHS["probe"] = bringup.Graph("probe", "one probe node", (), lambda a: [Spec("probe", "probe", "Probe",
                                                                                     parameters)])
print("rc", main(["up", "probe", "--duration", "3"]), flush=True)
"""


def koba_up_probe(parameters: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE_GRAPH, parameters], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.ros
def test_a_callback_raising_in_a_composed_graph_stops_it_with_one_line_naming_the_node():
    """README: "a crashed node stops the graph with one line"; composed, the exception escaped `koba up` as a
    traceback with exit code 1."""
    run = koba_up_probe('{"crash": true}')
    assert run.stdout.splitlines()[-1:] == ["rc 2"], (run.stdout + run.stderr)[-3000:]
    assert run.stderr.splitlines()[-1] == ("koba up: error: probe: callback failed: ZeroDivisionError: a bug in one "
                                           "node's callback"), run.stderr[-3000:]
    assert "[probe]: callback failed:" in run.stderr and "in tick" in run.stderr   # the traceback, in its log


@pytest.mark.ros
def test_integers_serve_for_float_parameters_in_a_composed_graph():
    """`max_rate: 5` raised InvalidParameterTypeException, `camera_pose: [0, -1, 0.485, ...]` a TypeError."""
    run = koba_up_probe('{"rate": 5, "pose": [0, -1, 0.485]}')
    assert "rc 0" in run.stdout.splitlines(), (run.stdout + run.stderr)[-3000:]
    assert '{"rate": 5.0, "pose": [0.0, -1.0, 0.485]}' in run.stdout.splitlines()


@pytest.mark.ros
@pytest.mark.parametrize("parameters, error", [
    ('{"rat": 0.5}', "probe has no parameter rat (did you mean rate?)"),
    ('{"rate": "fast"}', "probe: parameter rate must be a number, got 'fast'"),
    ('{"rate": true}', "probe: parameter rate must be a number, got True"),
    ('{"pose": [1, "a"]}', "probe: parameter pose must be a number, string, true/false or a list of one of them, "
                           "got [1, 'a']"),
])
def test_a_misspelt_or_mistyped_parameter_stops_a_composed_graph_in_one_line(parameters, error):
    """A misspelt name was dropped silently (the node ran on its default)."""
    run = koba_up_probe(parameters)
    assert run.stdout.splitlines()[-1:] == ["rc 2"], (run.stdout + run.stderr)[-3000:]
    assert run.stderr.splitlines()[-1] == f"koba up: error: {error}", run.stderr[-3000:]
    assert "Traceback" not in run.stderr


@pytest.mark.ros
def test_a_node_process_takes_an_integer_for_a_float_and_warns_of_a_misspelt_parameter():
    """A node process (ros2 run, ros2 launch, koba up --processes) names a parameter it does not have, and runs on:
    a params file shared by several nodes (`/**:`) legitimately holds parameters of others."""
    # -X faulthandler: a node that ignores the SIGINT below (seen once, session 27, on a loaded machine) is made to
    # print every thread's stack (SIGABRT), so the failure says where it hung
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "koba_ros.nodes.perception_node",
                             "--ros-args", "-p", "max_rate:=5", "-p", "max_rat:=0.5"], stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        for line in proc.stderr:  # ends at EOF if the node exits instead (an int for a float used to end it)
            lines.append(line)
            if "has no parameter" in line:
                break
        assert lines and lines[-1].rstrip().endswith(
            "perception_node has no parameter max_rat (did you mean max_rate?); ignored"), "".join(lines)[-3000:]
        assert proc.poll() is None  # still running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            stacks = proc.communicate(timeout=30)[1]
            pytest.fail("perception_node ignored SIGINT for 60 s; its threads:\n" + stacks[-6000:])


@pytest.mark.ros
def test_declare_converts_integers_for_floats_and_names_other_mismatches(ros_context):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from koba_ros.nodes.params import declare

    given = {"rate": 5, "pose": [0, -1, 2], "count": 640, "name": 3, "missing": None}
    node = Node("declare_probe", context=ros_context,
                parameter_overrides=[Parameter(k, value=v) for k, v in given.items()])
    try:
        assert declare(node, "rate", 1.0, "") == 5.0
        assert node.get_parameter("rate").type_ == Parameter.Type.DOUBLE
        assert declare(node, "pose", [1.0, 0.0, 0.0], "") == [0.0, -1.0, 2.0]
        assert declare(node, "count", 480, "") == 640
        with pytest.raises(KobaError, match="^declare_probe: parameter name must be a string, got 3$"):
            declare(node, "name", "", "")
        with pytest.raises(KobaError, match="^declare_probe: parameter missing must be a number, got no value$"):
            declare(node, "missing", 1.0, "")
    finally:
        node.destroy_node()


def test_a_params_file_holds_a_mixed_list_as_floats(tmp_path):
    """rcl's params-file parser refuses a list of ints and floats: the node process ended with an RCLError."""
    import yaml

    from koba_ros.launcher import parameter_values, write_params_file

    spec = NodeSpec("perception_node", "perception_node", "PerceptionNode", {"camera_pose": [0, -1, 0.485],
                                                                               "ints": [1, 2], "max_rate": 5})
    data = yaml.safe_load(open(write_params_file(spec, str(tmp_path))).read())
    assert data["perception_node"]["ros__parameters"] == {"camera_pose": [0.0, -1.0, 0.485], "ints": [1, 2],
                                                          "max_rate": 5}
    with pytest.raises(KobaError, match="^n: parameter p must be a number, string, true/false or a list"):
        parameter_values(NodeSpec("n", "x", "X", {"p": {"nested": 1}}))


def test_a_malformed_config_file_is_one_line_even_for_list(tmp_path, monkeypatch, capsys):
    import koba_ros.bringup as bringup
    from koba_ros.cli import main

    (tmp_path / "perception_node.yaml").write_text("perception_node:\n  ros__parameters:\n    bad: [unclosed\n")
    monkeypatch.setattr(bringup, "config_dir", lambda: tmp_path)
    assert main(["up", "picking", "--list"]) == 2
    assert capsys.readouterr().err == (f"koba up: error: {tmp_path / 'perception_node.yaml'}: not valid YAML "
                                       "(expected ',' or ']', but got '<stream end>' at line 4, column 1)\n")


# --- sim_node's rates -----------------------------------------------------------------------------------------------
class FakeCell:
    time = 0.0

    def step(self, n):
        self.time += n * 0.001

    def joint_state(self):
        return ["j"], np.zeros(1), np.zeros(1)

    def render(self):
        return "frame"


@pytest.mark.parametrize("camera_hz, joint_hz, name", [(0.0, 50.0, "camera_hz"), (-5.0, 50.0, "camera_hz"),
                                                        (5.0, float("nan"), "joint_hz")])
def test_the_real_time_loop_refuses_a_rate_that_means_never(camera_hz, joint_hz, name):
    """0, a negative rate or NaN meant one frame (or joint state), then never another, and no error."""
    with pytest.raises(KobaError, match=f"^{name} must be a finite number > 0"):
        from koba_ros.sim.realtime import RealTimeLoop

        RealTimeLoop(FakeCell(), camera_hz, joint_hz)


@pytest.mark.ros
@pytest.mark.parametrize("name, value", [("camera_rate", 0.0), ("joint_state_rate", float("nan"))])
def test_sim_node_refuses_a_rate_that_means_never_before_building_the_cell(ros_context, name, value):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.sim_node import SimNode

    with pytest.raises(KobaError, match=f"^sim_node: {name} must be a finite number > 0, got {value}$"):
        SimNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])


def test_every_parameter_a_graph_gives_is_one_its_node_declares():
    """Nodes now refuse a parameter they do not declare: a key in config/*.yaml or a graph override that no node
    declares would stop `koba up`. Read from the sources, so no node is built."""
    import re
    from pathlib import Path

    from koba_ros.bringup import GRAPHS

    nodes = Path(__file__).resolve().parents[1] / "koba_ros" / "nodes"
    for graph in GRAPHS.values():
        for spec in graph.resolve():
            declared = set(re.findall(r'declare\(\s*self,\s*"([^"]+)"', (nodes / f"{spec.executable}.py").read_text()))
            assert set(spec.parameters) <= declared, (graph.name, spec.name, set(spec.parameters) - declared)
