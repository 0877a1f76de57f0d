"""Test-wide set-up: an isolated ROS 2 domain per pytest run, DDS kept on loopback."""
import fcntl
import gc
import os
import tempfile

import pytest

_lock_file = None


def _claim_free_domain() -> int:
    """A ROS_DOMAIN_ID no other test run on this machine holds (lock files), so parallel runs never cross-talk."""
    global _lock_file
    start = os.getpid() % 100
    for offset in range(100):
        domain = 101 + (start + offset) % 100  # 101..200: clear of the default 0 and of users' usual ids
        handle = open(os.path.join(tempfile.gettempdir(), f"koba_ros_domain_{domain}.lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _lock_file = handle
        return domain
    raise RuntimeError("no free ROS domain id in 101..200")


# Set before any test imports rclpy, and inherited by the node processes tests start.
os.environ["ROS_DOMAIN_ID"] = str(_claim_free_domain())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def ros_context():
    """An initialised rclpy context for one test, shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)
    # rclpy prints "The following exception was never retrieved" when a Future holding an exception is collected;
    # collect this test's leftovers now, so the line lands in this test's output, not in a later test's captured
    # stderr (a later one-line-error test failed on it in CI once).
    gc.collect()
