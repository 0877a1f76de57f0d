"""A SIGTERM or Ctrl-C at any moment of spinning ends in an orderly shutdown and exit code 0.

Regression: rclpy's own signal handler shut the context down in the middle of spin_once, which then
failed creating its timeout timer ("the given context is not valid") about once in thirty `koba up` stops.
"""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros

# Each round: a node with a busy 1 ms timer, a signal at a random moment, spin must return by itself.
SCRIPT = r"""
import os, random, signal, sys, threading
import rclpy
from rclpy.node import Node
from koba_ros.nodes.runtime import init, spin

random.seed(int(sys.argv[1]))
before = signal.getsignal(signal.SIGTERM)
for round_ in range(int(sys.argv[2])):
    init([])
    node = Node(f"signal_probe_{round_}")
    ticks = []
    node.create_timer(0.001, lambda: ticks.append(sum(range(2000))))
    sig = random.choice([signal.SIGTERM, signal.SIGINT])
    threading.Timer(random.uniform(0.0, 0.2), os.kill, (os.getpid(), sig)).start()
    spin([node])
    assert rclpy.ok(), "the signal shut the context down behind the executor's back"
    rclpy.shutdown()
    assert signal.getsignal(signal.SIGTERM) is before, "spin left its signal handler installed"
print("rounds ok")
"""


def test_signals_at_random_moments_stop_spin_in_order():
    out = subprocess.run([sys.executable, "-c", SCRIPT, "7", "25"], capture_output=True, text=True, timeout=240)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "rounds ok" in out.stdout
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
