"""Perception: class-agnostic objects from RGB-D, ROS-free."""
