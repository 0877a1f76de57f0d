"""`koba feedback --keyboard` on a real terminal: a pseudo-terminal (pty) is its stdin, keys typed into it arrive on
/human_feedback over DDS, stamped when they were read; unmapped keys send nothing; q quits with a JSON summary."""
import json
import os
import pty
import select
import sys
import termios
import time

import pytest

pytestmark = pytest.mark.ros


def read_available(fd: int, wait: float) -> str:
    out = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def test_keys_typed_into_a_tty_reach_dds(ros_context):
    import subprocess

    from koba_interfaces.msg import HumanFeedback
    from rclpy.node import Node

    from test.rostools import spin_until, stop_process

    probe = Node("keyboard_tty_probe", context=ros_context)
    got = []
    probe.create_subscription(HumanFeedback, "/human_feedback", got.append, 50)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "koba_ros.cli", "feedback", "--keyboard", "--wait", "60", "--json"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)  # the child holds it; the test keeps the master end (the "keyboard")
    try:
        # Type only once the command listens: it reads keys only after its publisher has matched a subscriber
        # (--wait; the probe seeing the publisher does not mean the publisher has matched the probe yet, and a
        # message sent before that is lost), and the terminal is in cbreak mode (so the keys reach the key loop).
        assert spin_until(probe, lambda: probe.count_publishers("/human_feedback") >= 1, 60.0), "no publisher"
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and termios.tcgetattr(master)[3] & termios.ICANON:
            time.sleep(0.05)
        assert not termios.tcgetattr(master)[3] & termios.ICANON, "the terminal never left line mode"
        typed_at = time.time()
        os.write(master, b"+x-g")  # good, an unmapped key, bad, good
        assert spin_until(probe, lambda: len(got) >= 3, 30.0), f"only {len(got)} feedback messages arrived"
        os.write(master, b"q")
        assert proc.wait(timeout=30) == 0
        output = read_available(master, 2.0)
    finally:
        stop_process(proc)
        os.close(master)
        probe.destroy_node()
    assert [m.value for m in got] == [1.0, -1.0, 1.0]
    assert all(m.source == "keyboard" and m.confidence == 1.0 for m in got)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in got]
    assert all(typed_at - 1.0 <= s <= time.time() for s in stamps)  # stamped when read, on the ROS clock
    assert stamps == sorted(stamps)
    summary = json.loads(output[output.index("{"):output.rindex("}") + 1])
    assert summary == {"sent": 3}
