"""ros2 launch koba_ros maze_training.launch.py — the 'maze_training' graph of koba_ros/bringup.py."""
from koba_ros.launch_description import generate


def generate_launch_description():
    return generate("maze_training")
