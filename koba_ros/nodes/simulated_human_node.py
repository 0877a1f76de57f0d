"""simulated_human_node: a modelled person watching /tamer/transition (TamerTransition) and reacting on
/human_feedback.

The same SimulatedHuman as the benchmark (koba_ros/rl/human.py: binary, delay, stochasticity, unsustainability,
natural reaction), here on ROS time: a reaction is published when its time comes, stamped with that time.
"""
import math

from koba_interfaces.msg import HumanFeedback, TamerTransition
from rclpy.node import Node
from rclpy.time import Time

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare
from koba_ros.nodes.runtime import run_node
from koba_ros.nodes.tamer_learner_node import transition_env


class SimulatedHumanNode(Node):
    def __init__(self, **kwargs):
        super().__init__("simulated_human_node", **kwargs)
        from koba_ros.rl.envs import make_env, tabular_model
        from koba_ros.rl.human import HumanConfig, SimulatedHuman

        env_name = declare(self, "env", "maze", "Environment the learner runs (maze or taxi): the person's model.")
        layout = declare(self, "layout", "default", "Maze layout the learner runs.")
        seed = declare(self, "seed", 0, "Random seed of the person's choices.")
        try:
            if seed < 0:
                raise KobaError(f"seed must be >= 0, got {seed}")
            config = HumanConfig(
                p_feedback=declare(self, "p_feedback", 0.5, "Probability of reacting to a step at all (at start)."),
                p_wrong=declare(self, "p_wrong", 0.1, "Probability that a reaction has the wrong sign."),
                half_life=declare(self, "half_life", 2000.0, "Steps watched until p_feedback halves (0: never)."),
                delay=declare(self, "delay", "uniform:0.2:1.0", "Reaction delay distribution, kind:lo:hi[:mode]."),
                binary=declare(self, "binary", True, "Only +1/-1 (false: graded, 0 for a neutral step)."),
                judge=declare(self, "judge", "shortest_path", "shortest_path, or straight_line (maze: ignores "
                              "walls)."))
            env = make_env(env_name, **({"layout": layout} if env_name == "maze" else {}))
            inner = env.unwrapped
            grid = {"position_of": inner.position_of, "goal": inner.goal} if env_name == "maze" else {}
            self.human = SimulatedHuman(config, tabular_model(env).steps_to_goal(), seed=seed, **grid)
        except KobaError as exc:
            raise KobaError(f"simulated_human_node: {exc}") from None
        self.env_name = env_name
        self.watches = transition_env(env_name, layout)  # what the learner's TamerTransition.env must say
        self.pub = self.create_publisher(HumanFeedback, "/human_feedback", 50)
        self.create_subscription(TamerTransition, "/tamer/transition", self.on_transition, 50)
        self.create_timer(0.02, self.on_tick)  # reactions go out within 20 ms of their time

    def on_transition(self, msg: TamerTransition) -> None:
        if msg.env and msg.env != self.watches:
            # Its states are cells of another maze (or another environment): judged by this one's distances, good
            # moves would get -1. Said once, since every transition of that learner will be the same.
            self.get_logger().warning(f"not judging transitions from {msg.env!r}: this person models {self.watches!r}"
                                      " (give simulated_human_node the learner's env and layout)", once=True)
            return
        try:
            shown_at = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if not 0 <= shown_at < math.inf:  # a negative reaction stamp cannot be published: on_tick would raise
                raise KobaError(f"bad stamp {shown_at:g} s; expected a time >= 0")
            self.human.watch(msg.total_steps, msg.state, msg.action, msg.next_state, msg.terminated, shown_at)
        except KobaError as exc:
            self.get_logger().warning(f"cannot read transition: {exc}", throttle_duration_sec=5.0)

    def on_tick(self) -> None:
        for fb in self.human.due(self.get_clock().now().nanoseconds * 1e-9):
            msg = HumanFeedback(value=float(fb.value), confidence=1.0, source="simulated")
            msg.header.stamp = Time(nanoseconds=int(fb.stamp * 1e9)).to_msg()
            self.pub.publish(msg)


def main(args=None):
    run_node(SimulatedHumanNode, args)


if __name__ == "__main__":
    main()
