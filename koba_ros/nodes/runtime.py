"""Spinning nodes: the body of every node's main(), and the composed runner of `koba up`.

Lifecycle nodes are configured and activated on start (as launch_ros' autostart does), so a
graph started by `koba up` and one started by `ros2 launch` reach the same state.

Shutdown order matters. rclpy's own SIGINT/SIGTERM handler shuts the context down from inside the
signal handler, i.e. in the middle of whatever the executor is doing: spin_once can then fail with
RCLError ("the given context is not valid") and exit 1, and callbacks still on the thread pool touch
destroyed entities. So rclpy is initialised without signal handlers (`init()` below) and a signal only
sets a stop event; the spin loop then stops taking work, waits for running callbacks, destroys the
nodes, and only then shuts the context down.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from koba_ros.errors import KobaError
from koba_ros.nodes.executor import QueueOnceExecutor
from koba_ros.nodes.params import freeze_parameters, unknown_overrides

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A node being made hears of one already running 0.2-2.4 s later on loopback (when that one next announces itself);
# the running one hears of the new one within ~0.2 s. So: a check before spinning, DISCOVERY_WAIT after the node began
# to be made (its construction counts), and checks while spinning until NAMESAKE_WINDOW after. Two namesakes started
# within NAMESAKE_WINDOW of each other may both refuse; a node running longer never does.
DISCOVERY_WAIT = 1.0
NAMESAKE_WINDOW = 5.0


def init(args: list[str] | None = None) -> None:
    """rclpy.init without rclpy's signal handlers: `stop_on_signals` turns signals into an orderly stop."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` while inside; a second one falls back to the previous handler (force quit)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers; the caller then owns `stop`
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handle(signum, frame):
        stop.set()
        for s, handler in previous.items():
            signal.signal(s, handler)

    for s in STOP_SIGNALS:
        signal.signal(s, handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def autostart(node: Node) -> None:
    """Configure and activate a lifecycle node; a plain node is left as it is."""
    if not isinstance(node, LifecycleNode):
        return
    for transition, name in ((node.trigger_configure, "configure"), (node.trigger_activate, "activate")):
        if transition() != TransitionCallbackReturn.SUCCESS:
            # Convention: a lifecycle node that fails a transition leaves the one-line reason in .failure.
            reason = getattr(node, "failure", "") or "see the node's log"
            raise KobaError(f"{node.get_name()}: {name} failed: {reason}")


def refuse_namesakes(nodes: list[Node], since: float, wait: float = DISCOVERY_WAIT,
                     stop: threading.Event | None = None) -> None:
    """KobaError if a node of the same fully qualified name as one of `nodes` is on the graph (two picker_nodes would
    both execute every goal). Waits until `since` + `wait` for discovery (none when building took longer); the graph
    lists each of `nodes` once, so a name listed twice is a namesake's. `spin` goes on looking until NAMESAKE_WINDOW.
    A set `stop` (a signal during the wait) ends the wait."""
    deadline, stop = since + wait, stop or threading.Event()
    while True:
        names = nodes[0].get_fully_qualified_node_names() if nodes else []
        for node in nodes:
            name = node.get_fully_qualified_name()
            if names.count(name) > 1:
                domain = node.context.get_domain_id()
                raise KobaError(f"a node named {name} is already running (ROS_DOMAIN_ID {domain})")
        if time.monotonic() >= deadline or stop.wait(0.1):
            return


def shutdown_executor(executor: Executor, timeout: float = 5.0) -> None:
    """Executor.shutdown() that lets queued and running callbacks finish first.

    rclpy 9.1's Executor.shutdown() destroys its guard condition before it joins its thread pool, and it
    never waits for running callbacks (it marks itself shut down before checking whether to wait). A
    handler still queued on the pool then triggers the destroyed guard ("cannot use Destroyable", printed
    as a never-retrieved exception). So: run what the pool holds, wait for it, then shut down.
    """
    pool = getattr(executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
    if pool is not None:
        pool.shutdown(wait=True)
    tracker = getattr(executor, "_work_tracker", None)
    if tracker is not None:
        tracker.wait(timeout)
    executor.shutdown()


def pool_size(n_nodes: int) -> int:
    """Worker threads for spinning n_nodes nodes: one per CPU (rclpy's default) plus two per node.

    Some callbacks hold their worker while they wait for other callbacks: picker_node's goal waits for
    /joint_states and /perception/objects, and grounding_node's slow turn runs while its stop words must still be
    heard. With one worker per CPU, a graph composed on a 2-core machine runs out of free workers and "stop" waits
    behind a pick. Idle Python threads cost little, and the GIL limits CPU parallelism either way."""
    return (os.cpu_count() or 2) + 2 * n_nodes


def spin(nodes: Iterable[Node], stop: threading.Event | None = None,
         on_ready: Callable[[], None] | None = None, namesakes_until: float | None = None) -> None:
    """Spin nodes on one multi-threaded executor until Ctrl-C, SIGTERM, `stop` or an external shutdown; until the
    time.monotonic() `namesakes_until`, a namesake heard of ends it with refuse_namesakes' KobaError. A node's
    callback that raises ends it too: the traceback goes to that node's log, and a KobaError naming the node says
    it in one line (in a composed graph the exception used to escape `koba up` as a traceback)."""
    stop = stop or threading.Event()
    nodes = list(nodes)
    executor = QueueOnceExecutor(num_threads=pool_size(len(nodes)))
    for node in nodes:
        executor.add_node(node)
    try:
        with stop_on_signals(stop):
            if on_ready:
                on_ready()
            while rclpy.ok() and not stop.is_set():
                executor.spin_once(timeout_sec=0.1)
                if namesakes_until is not None and time.monotonic() < namesakes_until:
                    refuse_namesakes(nodes, 0.0, wait=0.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        failed = executor.failed_node
        if failed is None:   # not a node's callback (refuse_namesakes' KobaError, for one)
            raise
        failed.get_logger().error("callback failed:\n" + "".join(traceback.format_exception(exc)).rstrip())
        first_line = next(iter(str(exc).splitlines()), "")
        raise KobaError(f"{failed.get_name()}: callback failed: {type(exc).__name__}: {first_line}") from None
    finally:
        # Work still running in a callback (a pick) is told to stop before the executor waits for it: the executor no
        # longer delivers /joint_states, so it would only notice by timing out, with the arm still moving meanwhile.
        for node in nodes:
            if callable(stop_work := getattr(node, "stop_work", None)):
                stop_work()
        shutdown_executor(executor)
        for node in nodes:
            node.destroy_node()


def run_node(node_class: Callable[..., Node], args: list[str] | None = None) -> None:
    """main() of a node executable: init, build the node, autostart, spin, shut down cleanly."""
    init(args)
    node = None
    try:
        made = time.monotonic()
        node = node_class()
        stop = threading.Event()
        try:
            if unknown := unknown_overrides(node):
                node.get_logger().warning(unknown + "; ignored")
            freeze_parameters(node)
            autostart(node)
            with stop_on_signals(stop):   # a stop during the wait: spin then only shuts down in order
                refuse_namesakes([node], made, stop=stop)
        except KobaError:
            node.destroy_node()   # a sim_node's simulation thread and render process, for one
            raise
        spin([node], stop, namesakes_until=made + NAMESAKE_WINDOW)
    except KobaError as exc:
        if node is not None:
            node.get_logger().fatal(str(exc))
        raise SystemExit(f"{getattr(node_class, '__name__', 'node')}: {exc}") from None
    except KeyboardInterrupt:  # Ctrl-C while the node was still being built: a stop, not an error
        pass
    finally:
        if rclpy.ok():
            try:
                rclpy.shutdown()
            except Exception:  # noqa: BLE001 - a node whose constructor failed part way may not destroy cleanly
                if node is not None:
                    raise
