"""Speech: text-to-speech (espeak-ng) and speech recognition cores, ROS-free."""
