"""Camera rendering in a process of its own, so physics stepping never waits for the CPU renderer.

The render process builds the same cell (same bodies, same pre-rendered table and boxes) and never steps
its physics: each request carries a Pose of everything that moves (object base poses, arm and finger joint
positions, sim time), which it copies into its cell before rendering. The physics process asks for a frame
and goes on stepping; the frame comes back a render later, stamped with the sim time of its pose. On two
cores, physics and rendering then run side by side instead of one after the other.
"""
from __future__ import annotations

import atexit
import multiprocessing
import signal
import weakref

from koba_ros.sim.cell import Frame, Pose, SimCell
from koba_ros.sim.scene import Scene


def _serve(scene: Scene, conn) -> None:
    # Ctrl-C and `koba up`'s SIGTERM reach the whole process group: the parent stops in order and closes this process
    # (killed by one, it would end the parent's simulation thread in an EOFError before the parent's stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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


_open: weakref.WeakSet[RenderProcess] = weakref.WeakSet()


def _close_open() -> None:
    """At exit, close what nobody closed (a node whose constructor failed later): multiprocessing's own exit handler
    would SIGTERM the child, which ignores it, and then wait for it forever."""
    for renderer in list(_open):
        renderer.close()


class RenderProcess:
    def __init__(self, scene: Scene):
        context = multiprocessing.get_context("spawn")   # a fresh interpreter: no PyBullet state forked across
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(scene, child), daemon=True, name="koba-render")
        self._process.start()
        child.close()
        self.busy = False
        if not _open:   # registered after multiprocessing's exit handler (imported by start()), so run before it
            atexit.unregister(_close_open)
            atexit.register(_close_open)
        _open.add(self)

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
        _open.discard(self)
        if self._process.is_alive():
            try:
                # A frame still in flight: the child is blocked sending it (a frame is far larger than a pipe holds)
                # and would never read the None below; take it first, or close() waited 5 s and then killed it.
                if self.busy and self._conn.poll(2.0):
                    self._conn.recv()
                self.busy = False
                self._conn.send(None)
            except (BrokenPipeError, EOFError, OSError):
                pass
            self._process.join(timeout=5.0)
            if self._process.is_alive():
                self._process.kill()      # it ignores SIGTERM
                self._process.join(timeout=1.0)
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
