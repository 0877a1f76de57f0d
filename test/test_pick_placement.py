"""Where the picker puts things down and which way it grasps next to a wall."""
import math

import numpy as np

from koba_ros.picking.picker import Target, grasp_yaw
from koba_ros.picking.placement import free_spot
from koba_ros.sim.layout import box_regions


def test_empty_box_gets_its_centre_and_a_crowded_one_its_free_corner():
    region = box_regions()["top_left"]
    assert free_spot(region, [], 0.025) == region.centre
    cx, cy = region.centre
    # Objects everywhere but the corner toward +x, +y.
    occupied = [(cx + dx, cy + dy, 0.025) for dx in (-0.07, 0.0, 0.07) for dy in (-0.07, 0.0, 0.07)
                if not (dx > 0 and dy > 0)]
    x, y = free_spot(region, occupied, 0.025)
    assert x > cx + 0.03 and y > cy + 0.03 and region.contains(x, y, margin=0.025)


def test_a_cube_against_a_wall_is_grasped_along_the_wall():
    region = box_regions()["bottom_right"]
    cx, cy = region.centre
    near_x_wall = Target((cx - region.inner / 2 + 0.021, cy, 0.03), (0.04, 0.04, 0.04), yaw=math.pi / 2)
    yaw = grasp_yaw(near_x_wall)
    closing = np.array([math.sin(yaw), -math.cos(yaw)])
    assert abs(closing[0]) < 0.1        # fingers close along y, parallel to the wall
    # In the open the object's own long axis decides.
    free = Target((cx, cy, 0.03), (0.04, 0.04, 0.04), yaw=math.pi / 2)
    assert abs(abs(math.sin(grasp_yaw(free))) - 1) < 1e-6
