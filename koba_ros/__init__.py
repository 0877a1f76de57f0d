"""koba_ros: spoken-instruction picking, spoken teleop, DQN-TAMER and an NLP library on ROS 2."""
__version__ = "0.1.0"
