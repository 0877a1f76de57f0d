"""tamer_learner_node: runs the environment and the DQN-TAMER (or DQN, TAMER) agent in real time.

Publishes /tamer/transition (koba_interfaces/TamerTransition, one per step, stamped when the step was shown) and
/tamer/image (sensor_msgs/Image, rgb8: what the person watches).
Takes /human_feedback (koba_interfaces/HumanFeedback, stamped when the person reacted) and credits it to the steps
shown before that stamp. Bad feedback (future or stale stamps, NaN, bursts, nothing to credit) is logged, throttled,
and dropped; the learner keeps running. Writes learning curves (CSV, PNG) and checkpoints; `resume` continues.
"""
import math
from pathlib import Path

from koba_interfaces.msg import HumanFeedback, TamerTransition
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image

from koba_ros.errors import KobaError, reason
from koba_ros.nodes.params import declare, require_positive
from koba_ros.nodes.runtime import run_node


def transition_env(env_name: str, layout: str) -> str:
    """TamerTransition.env: the environment, and for a maze other than the default layout its layout ("maze:open5"),
    so that a watcher modelling another maze can refuse to judge it (states are cell indices of the learner's maze).
    The default maze stays "maze", what its transitions always said."""
    return f"{env_name}:{layout}" if env_name == "maze" and layout != "default" else env_name


class TamerLearnerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("tamer_learner_node", **kwargs)
        from koba_ros.rl.agents import ENV_AGENT_CONFIG, make_agent, with_overrides
        from koba_ros.rl.credit import CreditAssigner
        from koba_ros.rl.delay import Delay
        from koba_ros.rl.envs import DEFAULT_ENCODING, make_env, state_codes
        from koba_ros.rl.session import FeedbackLimits, TrainingSession

        env_name = declare(self, "env", "maze", "Environment: maze (koba/Maze-v0) or taxi.")
        layout = declare(self, "layout", "default", "Maze layout name (koba_ros/rl/maze.py LAYOUTS).")
        agent_name = declare(self, "agent", "dqn_tamer", "Agent: dqn, tamer or dqn_tamer.")
        seed = declare(self, "seed", 0, "Random seed of agent and environment.")
        settings = declare(self, "agent_settings", "", "Agent settings on top of the environment's defaults, "
                           "field=value,... (agents.AgentConfig, e.g. explore_temperature=0.1,avoid_repeats=1).")
        rate_hz = declare(self, "rate_hz", 1.0, "Environment steps per second (a person must be able to follow).")
        credit_delay = declare(self, "credit_delay", "gamma:0.2:4.0:0.5",
                               "Reaction-delay model for credit assignment, kind:lo:hi[:mode] (seconds).")
        credit_model = declare(self, "credit_model", "onset", "Credit model: onset (discrete moves) or interval.")
        self.publish_images = declare(self, "publish_image", True, "Publish /tamer/image for the person watching.")
        self.output_dir = declare(self, "output_dir", "", "Folder for curve.csv/curve.png/tensorboard/checkpoint.pt "
                                  "(empty: none).")
        resume = declare(self, "resume", False, "Load output_dir/checkpoint.pt on start.")
        self.save_every = declare(self, "save_every_episodes", 10, "Write curves and checkpoint every N episodes.")
        limit_values = dict(
            max_future_s=declare(self, "max_future_s", 0.5, "Reject feedback stamped further in the future."),
            max_age_s=declare(self, "max_age_s", 30.0, "Reject feedback stamped longer ago than this."),
            max_rate_hz=declare(self, "max_feedback_rate_hz", 20.0, "Sustained feedback rate accepted."),
            burst=declare(self, "feedback_burst", 20, "Feedback messages accepted at once."))
        try:
            require_positive(rate_hz=rate_hz)
            if seed < 0:
                raise KobaError(f"seed must be >= 0, got {seed}")
            if self.save_every < 1:
                raise KobaError(f"save_every_episodes must be >= 1, got {self.save_every}")
            limits = FeedbackLimits(**limit_values)  # checks each limit (a NaN one would switch its check off)
            options = {"layout": layout} if env_name == "maze" else {}
            env = make_env(env_name, render_mode="rgb_array", **options)
            config = with_overrides(ENV_AGENT_CONFIG[env_name], [i.strip() for i in settings.split(",") if i.strip()])
            agent = make_agent(agent_name, env.observation_space.n, env.action_space.n, config,
                               seed, *(state_codes(env, e) for e in DEFAULT_ENCODING[env_name]))
            credit = CreditAssigner(Delay.parse(credit_delay), credit_model)
            self.session = TrainingSession(env, agent, credit, limits, seed=seed)
            if self.publish_images:  # drawn once now: a missing drawing library must not surface in the timer
                self.session.render()
            if resume and not self.output_dir:
                raise KobaError("resume needs output_dir (the folder holding checkpoint.pt)")
            if self.output_dir:  # checked now: a bad folder must not surface in the first save, inside a timer
                from koba_ros.rl.train import load_checkpoint, prepare_output
                prepare_output(Path(self.output_dir), resume, "output_dir", "resume")
                if resume:
                    load_checkpoint(Path(self.output_dir) / "checkpoint.pt", agent, self.session, env_name)
                    self.get_logger().info(f"resumed at episode {len(self.session.episodes)}")
        except KobaError as exc:
            raise KobaError(f"tamer_learner_node: {exc}") from None
        self.env_name = env_name
        self.transition_env = transition_env(env_name, layout)
        self.transition_pub = self.create_publisher(TamerTransition, "/tamer/transition", 50)
        self.image_pub = self.create_publisher(Image, "/tamer/image", 2)
        self.create_subscription(HumanFeedback, "/human_feedback", self.on_feedback, 100)
        self.create_timer(1.0 / rate_hz, self.on_step)
        self.get_logger().info(f"{agent_name} on {env_name} at {rate_hz:g} Hz; credit {credit_delay} ({credit_model})")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_step(self) -> None:
        episodes_before = len(self.session.episodes)
        record = self.session.step(self.now(), render=self.publish_images)
        self.transition_pub.publish(self.transition_message(record))
        if self.publish_images:
            self.publish_image(record.frame)  # the step's result, drawn before an episode's end resets it
        if len(self.session.episodes) > episodes_before:
            last = self.session.episodes[-1]
            self.get_logger().info(f"episode {last.episode}: {last.steps} steps, return {last.ret:.2f}, "
                                   f"goal {last.reached_goal}, feedback so far {last.feedback}")
            if self.output_dir and len(self.session.episodes) % self.save_every == 0:
                self.save()

    def transition_message(self, record) -> TamerTransition:
        stats = self.session.agent.stats()
        msg = TamerTransition(env=self.transition_env, episode=record.episode, step=record.step,
                              total_steps=record.total_steps, state=record.state, action=record.action,
                              reward=record.reward, next_state=record.next_state, terminated=record.terminated,
                              truncated=record.truncated, epsilon=float(stats["epsilon"]),
                              feedback=int(stats["feedback"]), alpha_h=float(stats.get("alpha_h", math.nan)))
        msg.header.stamp = Time(nanoseconds=int(record.time * 1e9)).to_msg()
        msg.header.frame_id = "tamer_view"
        return msg

    def publish_image(self, frame) -> None:
        if frame is None:
            return
        msg = Image(height=frame.shape[0], width=frame.shape[1], encoding="rgb8", step=frame.shape[1] * 3,
                    data=frame.tobytes())
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "tamer_view"
        self.image_pub.publish(msg)

    def on_feedback(self, msg: HumanFeedback) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            credited = self.session.feedback(float(msg.value), stamp, self.now(), float(msg.confidence))
        except KobaError as exc:
            self.get_logger().warning(f"feedback from {msg.source or '?'} dropped: {exc}", throttle_duration_sec=2.0)
            return
        self.get_logger().debug(f"feedback {msg.value:+.0f} from {msg.source} credited to {credited} steps")

    def save(self) -> None:
        """Checkpoint and curves; a failed save (disk full, folder gone) is one logged line, and learning goes on."""
        from koba_ros.rl.train import save_checkpoint, write_curves

        folder = Path(self.output_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_checkpoint(folder / "checkpoint.pt", self.session.agent, self.session, self.now(), self.env_name)
            write_curves(folder, self.session.episodes, f"{self.session.agent.name} on {self.env_name} (live)")
        except (OSError, RuntimeError) as exc:  # torch.save reports some write failures as RuntimeError
            self.get_logger().error(f"cannot save to {folder}: {reason(exc)}")

    def destroy_node(self):
        if self.output_dir and self.session.episodes:
            self.save()
        return super().destroy_node()


def main(args=None):
    run_node(TamerLearnerNode, args)


if __name__ == "__main__":
    main()
