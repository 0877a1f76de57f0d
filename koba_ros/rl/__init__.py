"""Human-in-the-loop RL (DQN-TAMER, Arakawa et al. 2018): environments, agents, credit assignment, simulated humans.

ROS-free: the learner node, `koba tamer ...` and bench/dqn_tamer.py all drive these classes.
"""
