"""rclpy's MultiThreadedExecutor against QueueOnceExecutor (koba_ros/nodes/executor.py) on a real node pair.

    .venv/bin/python bench/executor.py --seconds 10

tamer_learner_node (DQN-TAMER on the maze, a 20 Hz timer that steps, learns and renders) and
simulated_human_node on one executor, spun the way runtime.spin does, first with rclpy's executor, then
with ours, in one process and one ROS domain, after a short untimed warm-up. Reports per executor:
environment steps per second against the timer's rate, feedback messages credited, and tasks handed to the
thread pool per environment step (each step also brings about four other callbacks: the human's transition
and ticks, the learner's feedback). Prints one JSON object; the ratio is ours over rclpy's steps per second.
"""
import argparse
import json
import os
import time

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from koba_ros.nodes.executor import QueueOnceExecutor
from koba_ros.nodes.runtime import pool_size, shutdown_executor
from koba_ros.nodes.simulated_human_node import SimulatedHumanNode
from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

RATE_HZ = 20.0


def measure(executor_class, seconds: float) -> dict:
    context = rclpy.Context()
    rclpy.init(context=context)
    learner = TamerLearnerNode(context=context, parameter_overrides=[
        Parameter("rate_hz", value=RATE_HZ), Parameter("agent", value="dqn_tamer")])
    human = SimulatedHumanNode(context=context, parameter_overrides=[
        Parameter("p_feedback", value=1.0), Parameter("half_life", value=0.0),
        Parameter("delay", value="uniform:0.05:0.1")])
    # runtime.spin's pool for two nodes (one worker per CPU plus two per node), as the docstring promises
    executor = executor_class(num_threads=pool_size(2), context=context)
    submissions = 0
    pool_submit = executor._executor.submit

    def counted_submit(*args, **kwargs):
        nonlocal submissions
        submissions += 1
        return pool_submit(*args, **kwargs)

    executor._executor.submit = counted_submit
    for node in (learner, human):
        executor.add_node(node)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        executor.spin_once(timeout_sec=0.1)
    elapsed = time.monotonic() - start
    steps = learner.session.total_steps
    result = {"steps_per_s": round(steps / elapsed, 2), "feedback_credited": learner.session.agent.feedback_count,
              "pool_submissions_per_step": round(submissions / max(steps, 1), 1)}
    for node in (learner, human):
        executor.remove_node(node)
    shutdown_executor(executor)
    for node in (learner, human):
        node.destroy_node()
    rclpy.shutdown(context=context)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    measure(QueueOnceExecutor, 2.0)  # warm-up: imports, the DQN's first steps; neither timed run pays for them
    rclpy_mt = measure(MultiThreadedExecutor, args.seconds)
    ours = measure(QueueOnceExecutor, args.seconds)
    print(json.dumps({"bench": "executor", "timer_hz": RATE_HZ, "seconds": args.seconds, "cpus": os.cpu_count(),
                      "rclpy_multithreaded": rclpy_mt, "queue_once": ours,
                      "steps_per_s_ratio": round(ours["steps_per_s"] / max(rclpy_mt["steps_per_s"], 1e-9), 2)}))


if __name__ == "__main__":
    main()
