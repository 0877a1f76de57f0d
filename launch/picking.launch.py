"""ros2 launch koba_ros picking.launch.py — the 'picking' graph of koba_ros/bringup.py."""
from koba_ros.launch_description import generate


def generate_launch_description():
    return generate("picking")
