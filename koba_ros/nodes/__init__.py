"""rclpy nodes: one per file, each a thin shell over a ROS-free core, each with main()."""
