"""Stepping a SimCell against the wall clock, rendering the camera and reporting joints at fixed rates.

sim_node runs this loop on one thread (PyBullet is not thread-safe); ROS callbacks hand it commands through
`submit`, which runs them between physics steps. When rendering makes the loop fall behind, physics catches
up in bursts of at most MAX_CATCH_UP steps, so commands are still applied promptly. With a RenderProcess the
loop only asks for frames (the pose at that sim time) and hands each one on when it comes back, so physics
does not wait for the renderer. Should the render process end (killed, crashed), the loop says so once through
on_error and renders on its own thread from then on: physics, /joint_states and the camera go on, more slowly.
"""
from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable

from koba_ros.errors import KobaError
from koba_ros.sim.cell import TIME_STEP, Frame, SimCell
from koba_ros.sim.render_process import RenderProcess

MAX_CATCH_UP = 48   # physics steps (0.2 s) per loop turn at most


class RealTimeLoop:
    def __init__(self, cell: SimCell, camera_hz: float = 5.0, joint_hz: float = 50.0,
                 on_frame: Callable[[Frame], None] | None = None,
                 on_joints: Callable[[list[str], object, object, float], None] | None = None,
                 real_time_factor: float = 1.0, renderer: RenderProcess | None = None,
                 on_error: Callable[[str], None] | None = None):
        self.cell = cell
        # A command that raises is reported here and skipped: it must never end the loop (the arm, the camera and
        # /joint_states would all stop while the node looked alive).
        self.on_error = on_error or (lambda text: print(text, file=sys.stderr, flush=True))
        self.renderer = renderer
        # A rate of 0, < 0 or NaN would mean one message, then never another; a real_time_factor of 0 or < 0 froze the
        # simulation silently, NaN or inf ended the loop's thread.
        for name, value in (("camera_hz", camera_hz), ("joint_hz", joint_hz), ("real_time_factor", real_time_factor)):
            if not 0.0 < value < math.inf:
                raise KobaError(f"{name} must be a finite number > 0, got {value}")
        self.camera_period, self.joint_period = 1.0 / camera_hz, 1.0 / joint_hz
        self.on_frame, self.on_joints = on_frame, on_joints
        self.factor = real_time_factor
        self.commands: queue.Queue[Callable[[SimCell], None]] = queue.Queue()
        self.frames = 0
        self.sim_elapsed = 0.0
        self.wall_elapsed = 0.0

    def submit(self, command: Callable[[SimCell], None]) -> None:
        """Run `command(cell)` on the simulation thread before the next physics step."""
        self.commands.put(command)

    def _apply_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                command(self.cell)
            except Exception as exc:  # noqa: BLE001 - see on_error
                self.on_error(f"simulation command failed: {type(exc).__name__}: {exc}")

    def _deliver(self, frame: Frame) -> None:
        self.frames += 1
        if self.on_frame:
            self.on_frame(frame)

    def _from_renderer(self, stop: threading.Event, call, *args):
        """call(*args) on the render process. If that process has ended (killed, crashed), say so once and render on
        this thread from then on: physics, /joint_states and the camera go on, slower. While the node closes the
        renderer (stop is set), an ended process is expected and nothing is said."""
        try:
            return call(*args)
        except (EOFError, OSError) as exc:
            if not stop.is_set():
                self.on_error(f"camera renderer stopped: {type(exc).__name__}: {str(exc) or 'its process ended'}; "
                              "rendering on the simulation thread from now on")
            self.renderer = None
            return None

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        wall0, sim0 = time.monotonic(), self.cell.time
        next_frame = next_joints = sim0
        while not stop.is_set():
            wall = time.monotonic() - wall0
            if duration is not None and wall >= duration:
                break
            self._apply_commands()
            behind = int((wall * self.factor - (self.cell.time - sim0)) / TIME_STEP)
            if behind > 0:
                self.cell.step(min(behind, MAX_CATCH_UP))
            if self.cell.time >= next_joints and self.on_joints:
                names, q, qd = self.cell.joint_state()
                self.on_joints(names, q, qd, self.cell.time)
                next_joints = self.cell.time + self.joint_period
            if self.cell.time >= next_frame:
                if self.renderer is None:
                    self._deliver(self.cell.render())
                    next_frame += self.camera_period
                elif not self.renderer.busy:     # still rendering the last one: ask as soon as it is free
                    self._from_renderer(stop, self.renderer.request, self.cell.pose())
                    next_frame += self.camera_period
                next_frame = max(next_frame, self.cell.time)
            if self.renderer is not None and (frame := self._from_renderer(stop, self.renderer.poll)) is not None:
                self._deliver(frame)
            if behind <= 0:
                time.sleep(TIME_STEP)
            self.sim_elapsed, self.wall_elapsed = self.cell.time - sim0, time.monotonic() - wall0
