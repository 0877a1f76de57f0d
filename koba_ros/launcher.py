"""Starting a graph from bringup.py on a plain machine (what `koba up` does).

Composed: every node in this process on one multi-threaded executor (nodes/executor.py). Processes: one child
per node (`python -m koba_ros.nodes.X --ros-args ...`), in its own process group, stopped
with SIGINT then SIGTERM then SIGKILL so nothing is left behind. Either way the nodes
talk over DDS, exactly as under `ros2 launch`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from koba_ros.bringup import NodeSpec
from koba_ros.errors import KobaError


def ros_args(spec: NodeSpec, params_file: str | None = None) -> list[str]:
    """--ros-args for a node: its name, its remappings, and its parameters file."""
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    if params_file:
        args += ["--params-file", params_file]
    return args


def parameter_values(spec: NodeSpec) -> dict:
    """spec.parameters as ROS parameters hold them. A list mixing integers and floats (YAML `[0, -1, 0.485]`) is a
    list of floats: rclpy's Parameter and rcl's params-file parser both refuse mixed lists. A value no ROS parameter
    holds (a mapping, a list of mixed kinds, no value) is a KobaError naming the node and the parameter."""
    from rclpy.parameter import Parameter

    values = {}
    for name, value in spec.parameters.items():
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in value):
            value = [float(v) for v in value] if any(isinstance(v, float) for v in value) else list(value)
        try:
            Parameter.Type.from_parameter_value(value)
        except TypeError:
            value = None
        if value is None:
            raise KobaError(f"{spec.name}: parameter {name} must be a number, string, true/false or a list of one of "
                            f"them, got {spec.parameters[name]!r:.60}")
        values[name] = value
    return values


def write_params_file(spec: NodeSpec, folder: str) -> str | None:
    if not spec.parameters:
        return None
    path = Path(folder) / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump({spec.name: {"ros__parameters": parameter_values(spec)}}))
    return str(path)


def run_composed(specs: list[NodeSpec], stop: threading.Event | None = None, on_ready=None) -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from koba_ros.nodes.params import freeze_parameters, unknown_overrides
    from koba_ros.nodes.runtime import NAMESAKE_WINDOW, autostart, init, refuse_namesakes, spin, stop_on_signals

    init(sys.argv[:1])  # not the koba command line: it is no ROS argument list
    nodes = []
    made = time.monotonic()
    stop = stop or threading.Event()
    try:
        try:
            for spec in specs:
                cls = spec.load_class()
                overrides = [Parameter(k, value=v) for k, v in parameter_values(spec).items()]
                node = cls(cli_args=ros_args(spec), parameter_overrides=overrides, use_global_arguments=False)
                nodes.append(node)
                if unknown := unknown_overrides(node):
                    raise KobaError(unknown)
                freeze_parameters(node)
                autostart(node)
            with stop_on_signals(stop):
                refuse_namesakes(nodes, made, stop=stop)   # one wait for all, from the first node: usually none left
        except BaseException:
            # The nodes built so far go (a sim_node's simulation thread and render process, for one).
            for node in nodes:
                node.destroy_node()
            raise
        spin(nodes, stop=stop, on_ready=on_ready, namesakes_until=made + NAMESAKE_WINDOW)
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def start_processes(specs: list[NodeSpec], params_dir: str) -> dict[str, subprocess.Popen]:
    children = {}
    for spec in specs:
        cmd = [sys.executable, "-m", spec.module, *ros_args(spec, write_params_file(spec, params_dir))]
        children[spec.name] = subprocess.Popen(cmd, start_new_session=True)
    return children


def stop_processes(children: dict[str, subprocess.Popen], grace: float = 5.0) -> None:
    # SIGTERM first: a node still importing has no handler yet and ends silently on it (SIGINT would raise
    # KeyboardInterrupt in the middle of an import, a screen of traceback); a running node stops in order on it.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in children.values() if p.poll() is None]
        if not alive:
            return
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def run_processes(specs: list[NodeSpec], stop: threading.Event | None = None, on_ready=None) -> None:
    """One process per node; returns when stop is set, on SIGINT/SIGTERM, or when a node dies."""
    stop = stop or threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    with tempfile.TemporaryDirectory(prefix="koba_up_") as params_dir:
        children = start_processes(specs, params_dir)
        try:
            if on_ready:
                on_ready()
            while not stop.is_set():
                dead = [name for name, p in children.items() if p.poll() is not None]
                if dead:
                    raise KobaError(f"node {dead[0]} exited with code {children[dead[0]].returncode}")
                stop.wait(0.2)
        finally:
            stop_processes(children)
            for s, handler in previous.items():
                signal.signal(s, handler)
