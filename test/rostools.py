"""Helpers for tests that run real nodes over DDS (on the isolated domain conftest picked)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import rclpy


def start_process(*args: str, **kwargs) -> subprocess.Popen:
    """Start a Python module or script in its own process group (so a test can stop all of it)."""
    return subprocess.Popen([sys.executable, *args], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def spin_until(node, condition, timeout: float, executor=None) -> bool:
    """Spin `node` until condition() is true or timeout seconds pass."""
    executor = executor or rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                return True
            executor.spin_once(timeout_sec=0.05)
        return condition()
    finally:
        executor.remove_node(node)


def wait_for(condition, timeout: float = 60.0) -> bool:
    """Poll `condition` every 20 ms until it holds or `timeout` (generous: the machine may be very busy) passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def wait_for_nodes(node, names: set[str], timeout: float) -> set[str]:
    """Node names from `names` that appeared in the ROS graph within timeout."""
    seen: set[str] = set()

    def all_seen():
        seen.update(n for n in node.get_node_names() if n in names)
        return seen >= names

    spin_until(node, all_seen, timeout)
    return seen


def processes_with(fragment: str) -> list[int]:
    """PIDs whose command line contains fragment and which share this test run's ROS domain."""
    domain = os.environ.get("ROS_DOMAIN_ID", "")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            environ = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if fragment in cmdline and f"ROS_DOMAIN_ID={domain}".encode() in environ:
            pids.append(int(entry))
    return pids
