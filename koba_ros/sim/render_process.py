"""Camera rendering in a process of its own, so physics stepping never waits for the CPU renderer.

The render process builds the same cell (same bodies, same pre-rendered table and boxes) and never steps
its physics: each request carries a Pose of everything that moves (object base poses, arm and finger joint
positions, sim time), which it copies into its cell before rendering. The physics process asks for a frame
and goes on stepping; the frame comes back a render later, stamped with the sim time of its pose. On two
cores, physics and rendering then run side by side instead of one after the other.
"""
from __future__ import annotations

import multiprocessing
import signal

from koba_ros.sim.cell import Frame, Pose, SimCell
from koba_ros.sim.scene import Scene


def _serve(scene: Scene, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C goes to the parent, which stops this process
    with SimCell(scene, settle_s=0.0) as cell:
        while True:
            try:
                pose = conn.recv()
            except EOFError:                       # the parent is gone
                return
            if pose is None:
                return
            cell.set_pose(pose)
            conn.send(cell.render())


class RenderProcess:
    def __init__(self, scene: Scene):
        context = multiprocessing.get_context("spawn")   # a fresh interpreter: no PyBullet state forked across
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(scene, child), daemon=True, name="koba-render")
        self._process.start()
        child.close()
        self.busy = False

    def request(self, pose: Pose) -> None:
        """Start rendering `pose` (one frame in flight at a time: ignored while busy)."""
        if not self.busy:
            self._conn.send(pose)
            self.busy = True

    def poll(self, timeout: float = 0.0) -> Frame | None:
        """The requested frame if it is ready (waiting up to `timeout` s), else None."""
        if self.busy and self._conn.poll(timeout):
            self.busy = False
            return self._conn.recv()
        return None

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=5.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=1.0)
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
