"""The region the tool may visit: above the table, around the boxes, clear of the robot's own base."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workspace:
    x: tuple[float, float] = (0.15, 0.75)   # the low bound leaves room for the tucked home pose
    y: tuple[float, float] = (-0.30, 0.30)
    z: tuple[float, float] = (0.005, 0.50)
    reach: float = 0.82   # max distance from the shoulder (0, 0, 0.333) the Panda reaches pointing down

    def contains(self, p) -> bool:
        x, y, z = (float(v) for v in p)
        inside = self.x[0] <= x <= self.x[1] and self.y[0] <= y <= self.y[1] and self.z[0] <= z <= self.z[1]
        return inside and float(np.linalg.norm(np.subtract(p, (0, 0, 0.333)))) <= self.reach

    def why_not(self, p) -> str:
        return (f"({p[0]:.3g}, {p[1]:.3g}, {p[2]:.3g}) m is outside the workspace x {self.x}, y {self.y}, "
                f"z {self.z}")   # .3g: 1e308 is 1e+308, not 309 digits
