"""ros2 launch koba_ros teleop.launch.py — the 'teleop' graph of koba_ros/bringup.py."""
from koba_ros.launch_description import generate


def generate_launch_description():
    return generate("teleop")
