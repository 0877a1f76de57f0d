"""Top-down pick and place: kinematics, motion planning, placement, the picker and a simulated session."""
