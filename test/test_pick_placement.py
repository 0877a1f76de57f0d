"""Where the picker puts things down and which way it grasps next to a wall."""
import math

import numpy as np

from koba_ros.picking.picker import Target, grasp_yaw
from koba_ros.picking.placement import free_spot, place_among
from koba_ros.sim.layout import box_regions


def test_empty_box_gets_its_centre_and_a_crowded_one_its_free_corner():
    region = box_regions()["top_left"]
    assert free_spot(region, [], 0.025) == region.centre
    cx, cy = region.centre
    # Objects everywhere but toward +x, +y (and the +x middle: the open fingers keep a spot 7 cm from the y walls,
    # session 30, and from the corner alone every spot in reach overlaps a neighbour).
    occupied = [(cx + dx, cy + dy, 0.025) for dx in (-0.07, 0.0, 0.07) for dy in (-0.07, 0.0, 0.07)
                if not (dx > 0 and dy >= 0)]
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


def test_place_among_keeps_clear_of_what_is_in_the_destination_box_only():
    from koba_ros.perception.objects import PerceivedObject

    region = box_regions()["top_right"]
    cx, cy = region.centre

    def obj(i, box, dx, dy):
        return PerceivedObject(i, (0, 0, 10, 10), (cx + dx, cy + dy, 0.03), (0.05, 0.05, 0.05), box, (0.5, 0.5, 0.5))

    # Something at the centre of the destination box: the object goes elsewhere, clear of it.
    there = [obj(0, "top_right", 0.0, 0.0), obj(1, "top_left", 0.0, 0.0)]
    x, y = place_among("top_right", there, (0.04, 0.04, 0.04))
    assert math.hypot(x - cx, y - cy) > 0.05 and region.contains(x, y, margin=0.02)
    # The object being moved, and objects in other boxes, take no room.
    assert place_among("top_right", there, (0.04, 0.04, 0.04), skip_id=0) == region.centre
    assert place_among("top_right", [obj(1, "top_left", 0.0, 0.0)], (0.04, 0.04, 0.04)) == region.centre
    assert place_among("the moon", there, (0.04, 0.04, 0.04)) is None     # no box: the picker rejects the goal
