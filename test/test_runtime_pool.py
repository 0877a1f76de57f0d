"""runtime.spin keeps workers free while callbacks wait for other callbacks (pool_size): more waiting callbacks than
CPUs, each waiting for a message that a timer of another node publishes, all get it."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros

# N waiters (N = CPUs + 1), each with a one-shot timer whose callback waits up to 5 s for /tick; a publisher node's
# timer sends /tick once all N wait. That needs N workers held by waiting callbacks plus free ones for the ticker and
# the subscriptions: rclpy's default pool, one worker per CPU, never gets all N waiting, and every wait times out.
# The waiters' subscriptions are in a reentrant group, as picker_node's are, so only free workers decide.
SCRIPT = r"""
import json, os, sys, threading
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Int32
from koba_ros.nodes.runtime import init, spin

init([])
n = (os.cpu_count() or 2) + 1
got, waiting, stop = [], [], threading.Event()
nodes = []
for i in range(n):
    node = Node(f"waiter_{i}")
    group, heard = ReentrantCallbackGroup(), threading.Event()
    node.create_subscription(Int32, "/tick", lambda m, heard=heard: heard.set(), 10, callback_group=group)
    def wait(heard=heard, node=node):
        node.timer.cancel()
        waiting.append(node)
        got.append(heard.wait(5.0))
        if len(got) == n:
            stop.set()
    node.timer = node.create_timer(0.2, wait, callback_group=group)
    nodes.append(node)
publisher = Node("ticker")
pub = publisher.create_publisher(Int32, "/tick", 10)
publisher.create_timer(0.05, lambda: len(waiting) == n and pub.publish(Int32(data=1)))  # once all of them wait
guard = threading.Timer(30.0, stop.set)
guard.daemon = True
guard.start()
spin([*nodes, publisher], stop=stop)
rclpy.shutdown()
print(json.dumps({"waiters": n, "heard": got}))
"""


def test_waiting_callbacks_do_not_starve_the_one_they_wait_for():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heard"] == [True] * result["waiters"], result
