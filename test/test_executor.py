"""QueueOnceExecutor: each ready callback reaches the thread pool once, and it is still rclpy's executor."""
import threading
import time

import pytest
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import Int32

from koba_ros.nodes.executor import QueueOnceExecutor
from koba_ros.nodes.runtime import shutdown_executor

pytestmark = pytest.mark.ros


def spin_until(executor, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        executor.spin_once(timeout_sec=0.05)
    return condition()


@pytest.fixture
def node_and_executor(ros_context):
    node = Node("executor_probe", context=ros_context)
    executor = QueueOnceExecutor(num_threads=2, context=ros_context)
    executor.add_node(node)
    yield node, executor
    executor.remove_node(node)
    shutdown_executor(executor)
    node.destroy_node()


def test_a_busy_timer_and_a_subscription_are_each_queued_once_per_call(node_and_executor):
    # The stock rclpy 9.1 executor queues a task again on every spin until a worker takes it: with a callback that
    # holds the GIL for 20 ms that was hundreds of submissions per call. Here submissions equal calls.
    node, executor = node_and_executor
    calls = {"timer": 0, "message": 0}
    pub = node.create_publisher(Int32, "/executor_probe", 10)

    def on_timer():
        calls["timer"] += 1
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:  # pure-Python work: holds the GIL, as a DQN step or a render does
            pass
        pub.publish(Int32(data=calls["timer"]))

    node.create_subscription(Int32, "/executor_probe", lambda m: calls.__setitem__("message", calls["message"] + 1),
                             10)
    node.create_timer(0.05, on_timer)
    assert spin_until(executor, lambda: calls["timer"] >= 30 and calls["message"] >= 20)
    # Every submission ran its callback; the few submissions not yet run are the ones in flight right now.
    assert calls["timer"] + calls["message"] <= executor.submissions <= calls["timer"] + calls["message"] + 3


def test_reentrant_callbacks_still_run_on_two_threads_at_once(node_and_executor):
    node, executor = node_and_executor
    group = ReentrantCallbackGroup()
    first_in, second_in, threads = threading.Event(), threading.Event(), set()

    def first():
        threads.add(threading.get_ident())
        first_in.set()
        second_in.wait(10.0)  # returns only if the other callback runs meanwhile, on another thread

    def second():
        if first_in.is_set():
            threads.add(threading.get_ident())
            second_in.set()

    node.create_timer(0.05, first, callback_group=group)
    node.create_timer(0.02, second, callback_group=group)
    assert spin_until(executor, second_in.is_set)
    assert len(threads) == 2


def test_a_callback_exception_is_raised_on_the_spinning_thread(node_and_executor):
    node, executor = node_and_executor

    def broken():
        raise ValueError("broken callback")

    timer = node.create_timer(0.01, broken)
    with pytest.raises(ValueError, match="broken callback"):
        spin_until(executor, lambda: False, timeout=5.0)
    timer.cancel()


def test_a_coroutine_is_resumed_after_it_awaits(node_and_executor):
    # A coroutine that awaits leaves the pool unfinished; it must be queued again when its future completes.
    node, executor = node_and_executor
    results = []
    future = Future()

    async def waiter():
        results.append(await future)

    task = executor.create_task(waiter)
    timer = node.create_timer(0.05, lambda: future.done() or future.set_result("done"))
    executor.spin_until_future_complete(task, timeout_sec=10.0)
    timer.cancel()
    assert task.done() and results == ["done"]


def test_spin_until_future_complete_returns_when_a_callback_completes_the_future(node_and_executor):
    node, executor = node_and_executor
    future = Future()
    node.create_timer(0.05, lambda: future.done() or future.set_result(42))
    executor.spin_until_future_complete(future, timeout_sec=10.0)
    assert future.result() == 42
