"""Spinning nodes: the body of every node's main(), and the composed runner of `koba up`.

Lifecycle nodes are configured and activated on start (as launch_ros' autostart does), so a
graph started by `koba up` and one started by `ros2 launch` reach the same state.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

from koba_ros.errors import KobaError


def autostart(node: Node) -> None:
    """Configure and activate a lifecycle node; a plain node is left as it is."""
    if not isinstance(node, LifecycleNode):
        return
    for transition, name in ((node.trigger_configure, "configure"), (node.trigger_activate, "activate")):
        if transition() != TransitionCallbackReturn.SUCCESS:
            # Convention: a lifecycle node that fails a transition leaves the one-line reason in .failure.
            reason = getattr(node, "failure", "") or "see the node's log"
            raise KobaError(f"{node.get_name()}: {name} failed: {reason}")


def spin(nodes: Iterable[Node], stop: threading.Event | None = None,
         on_ready: Callable[[], None] | None = None) -> None:
    """Spin nodes on one MultiThreadedExecutor until shutdown (Ctrl-C, SIGTERM) or `stop` is set."""
    executor = MultiThreadedExecutor()
    nodes = list(nodes)
    for node in nodes:
        executor.add_node(node)
    if on_ready:
        on_ready()
    try:
        while rclpy.ok() and not (stop and stop.is_set()):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # rclpy 9.1's Executor.shutdown() marks itself shut down before it checks whether to wait, so it
        # never waits for callbacks still running on the pool; one finishing later triggers the executor's
        # destroyed guard condition ("cannot use Destroyable"). Wait for them first.
        tracker = getattr(executor, "_work_tracker", None)
        if tracker is not None:
            tracker.wait(5.0)
        executor.shutdown()
        for node in nodes:
            node.destroy_node()


def run_node(node_class: Callable[..., Node], args: list[str] | None = None) -> None:
    """main() of a node executable: init, build the node, autostart, spin, shut down cleanly."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        autostart(node)
        spin([node])
    except KobaError as exc:
        if node is not None:
            node.get_logger().fatal(str(exc))
        raise SystemExit(f"{getattr(node_class, '__name__', 'node')}: {exc}") from None
    finally:
        if rclpy.ok():
            rclpy.shutdown()
