"""A MultiThreadedExecutor that hands each ready callback to its thread pool once.

rclpy 9.1 (Kilted) `MultiThreadedExecutor._spin_once_impl` submits the handler that
`wait_for_ready_callbacks` yields to a ThreadPoolExecutor and returns. `wait_for_ready_callbacks`
yields in-progress tasks that are "not executing and not done" first, without waiting, and a task
still queued in the pool is exactly that. So until a worker picks it up, every spin submits the same
task again and returns at once: the spinning thread busy-loops holding the GIL, and the pool queue
fills with copies (Task.__call__ makes each copy a no-op, but every one still costs a worker a turn).
Measured here with tamer_learner_node + simulated_human_node: one task queued up to 1,901 times in
5 s, and a 20 Hz timer reached 2-3 steps/s (bench/executor.py). Upstream reports: ros2/rclpy#1452.

This subclass keeps a set of the tasks it has queued. A task already queued is not queued again, and
the spin then waits (up to its timeout) for a worker to start it instead of looping; the worker's
start ends the wait. Everything else (callback groups, wait_condition of spin_until_future_complete,
exceptions raised from callbacks on the spinning thread) is rclpy's; on such an exception `failed_node` says whose
callback it was (runtime.spin names it in its one-line error).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
    TimeoutObject,
)
from rclpy.node import Node

WAIT_SLICE_S = 0.05  # how often a spin waiting for a free worker re-checks shutdown and its condition


class QueueOnceExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor without duplicate submissions of a queued task (see module doc)."""

    def __init__(self, num_threads: int | None = None, *, context=None) -> None:
        super().__init__(num_threads, context=context)
        self._queued: dict[object, threading.Event] = {}  # task -> set when a worker starts it
        self._queued_lock = threading.Lock()
        self.submissions = 0  # tasks handed to the pool; a test compares it with callbacks run
        self._node_of: dict[object, Node | None] = {}  # each queued task -> the node of its callback (None: no node)
        self.failed_node: Node | None = None  # whose callback raised the exception spin_once last re-raised

    def _spin_once_impl(self, timeout_sec: float | TimeoutObject | None = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _, node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._queued_lock:
            started = self._queued.get(handler)
            if started is None:
                started = self._queued[handler] = threading.Event()
                self._executor.submit(self._run, handler, started)
                self.submissions += 1
                self._futures.append(handler)
                self._node_of[handler] = node
        if started.is_set():
            # Started but not yet marked executing: give the worker the GIL rather than spin on it.
            time.sleep(0)
        else:
            self._wait_started(started, timeout_sec, wait_condition)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                node = self._node_of.pop(future, None)
                try:
                    future.result()  # re-raise a callback's exception here, as rclpy does
                except Exception:
                    self.failed_node = node
                    raise

    def _run(self, handler, started: threading.Event) -> None:
        started.set()
        try:
            handler()
        finally:
            with self._queued_lock:
                self._queued.pop(handler, None)  # a coroutine that awaited is yielded again and queued anew

    def _wait_started(self, started: threading.Event, timeout_sec: float | TimeoutObject | None,
                      wait_condition: Callable[[], bool]) -> None:
        """Wait until a worker starts the task, the timeout passes, the executor shuts down or the condition holds."""
        if isinstance(timeout_sec, TimeoutObject):  # spin_until_future_complete passes its time left this way
            timeout_sec = timeout_sec.timeout
        deadline = None if timeout_sec is None or timeout_sec < 0 else time.monotonic() + timeout_sec
        while not started.is_set():
            if self._is_shutdown or not self._context.ok() or wait_condition():
                return
            left = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, deadline - time.monotonic())
            if left <= 0:
                return
            started.wait(left)
