"""Session 22 review fixes in the DQN-TAMER code: a resumed run is a continuation (simulated human, environment
random state, credit history; a mid-episode save ends that episode for the agent), the picture of a terminal step,
Taxi's picture, range-checked agent settings and feedback limits, and the maze's refusals."""
import csv
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.rl.agents import ENV_AGENT_CONFIG, TAXI_AGENT, AgentConfig, make_agent, with_overrides
from koba_ros.rl.bench import BenchConfig, build_run, simulate
from koba_ros.rl.envs import make_env, tabular_model
from koba_ros.rl.human import HumanConfig
from koba_ros.rl.human_reward import HConfig
from koba_ros.rl.maze import MazeEnv
from koba_ros.rl.q_learner import QConfig
from koba_ros.rl.session import FeedbackLimits, TrainingSession
from koba_ros.rl.train import load_checkpoint, save_checkpoint, train


# --- 1. resume is a continuation ------------------------------------------------------------------------------
def _curve(folder: Path) -> list[dict]:
    with (folder / "curve.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_resumed_maze_run_equals_an_uninterrupted_one(tmp_path):
    """Was: the simulated human restarted rested, with a fresh random stream and its pending reactions lost, and the
    credit history was empty, so feedback counts and returns parted after the resume."""
    import torch

    # The person tires within the run (half_life 200 watched steps: a rested one after the resume gives more), and
    # at the save after episode 7 a reaction to its last step is still on its way (it needs the credit history).
    kw = dict(env="maze", layout="corridor", agents=("dqn_tamer",), seeds=1,
              human=HumanConfig(p_feedback=1.0, half_life=200))
    full = train(BenchConfig(**kw, episodes=14), "dqn_tamer", 0, str(tmp_path / "full"))
    train(BenchConfig(**kw, episodes=7), "dqn_tamer", 0, str(tmp_path / "split"))
    saved = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert len(saved["human"]["pending"]) == 1 and saved["human"]["observed"] > 200
    resumed = train(BenchConfig(**kw, episodes=7), "dqn_tamer", 0, str(tmp_path / "split"), resume=True)
    assert resumed["resumed_from_episode"] == 7
    assert _curve(tmp_path / "split") == _curve(tmp_path / "full")  # steps, return, feedback, time per episode
    assert (resumed["feedback"], resumed["total_steps"], resumed["alpha_h"]) == (full["feedback"],
                                                                                full["total_steps"], full["alpha_h"])


def _recording_starts(env, starts: list[int]) -> list[int]:
    """Appends every start state env.reset() draws from now on to `starts`."""
    reset = env.reset

    def recorded(*args, **kwargs):
        obs, info = reset(*args, **kwargs)
        starts.append(int(obs))
        return obs, info

    env.reset = recorded
    return starts


def test_taxi_start_states_continue_their_sequence_after_a_resume(tmp_path):
    """Was: the resumed session re-seeded Taxi, so episode 3 began where episode 0 had."""
    config = BenchConfig(env="taxi", agents=("dqn",), seeds=1, episodes=3)
    env, agent, session, human = build_run(config, "dqn", 0)
    starts = _recording_starts(env, [session.state])
    now = simulate(session, human, 2, 1.0)
    save_checkpoint(tmp_path / "c.pt", agent, session, now, "taxi")
    simulate(session, human, 4, 1.0, now)              # the uninterrupted run: start states of episodes 0..4
    assert len(starts) == 5 and len(set(starts)) > 1
    env2, agent2, session2, human2 = build_run(config, "dqn", 0)
    load_checkpoint(tmp_path / "c.pt", agent2, session2, "taxi")
    resumed = _recording_starts(env2, [session2.state])
    simulate(session2, human2, 4, 1.0, now)
    assert resumed == starts[2:]
    assert [e.ret for e in session2.episodes] == [e.ret for e in session.episodes]


def test_a_save_in_the_middle_of_an_episode_ends_it_for_the_agent(tmp_path):
    """The node saves on shutdown wherever the episode is. Was: the resumed agent kept that episode's visits (it
    treated the new start state as a revisit) and step count, and Taxi restarted at episode 0's start state."""
    config = BenchConfig(env="taxi", agents=("dqn_tamer",), seeds=1, episodes=1)
    env, agent, session, _ = build_run(config, "dqn_tamer", 0)
    first_start = session.state
    for t in range(60):
        session.step(float(t))
    assert session.episodes == [] and agent.taken      # in the middle of episode 0
    save_checkpoint(tmp_path / "mid.pt", agent, session, 60.0, "taxi")
    next_start, _ = env.reset()                        # where a new episode would start from here
    _, agent2, session2, _ = build_run(config, "dqn_tamer", 0)
    load_checkpoint(tmp_path / "mid.pt", agent2, session2, "taxi")
    assert (agent2.episode_steps, agent2.q_agreed, agent2.taken) == (0, 0, {})
    assert agent2.steps == 60 and session2.total_steps == 60 and session2.episode_steps == 0
    assert session2.state == next_start and next_start != first_start
    assert agent2.alpha_h == agent.alpha_h             # not reaching the goal: no hand-over step


def test_a_damaged_session_state_is_one_line_and_leaves_the_environment(tmp_path):
    import torch

    config = BenchConfig(env="taxi", agents=("dqn",), seeds=1, episodes=1)
    env, agent, session, human = build_run(config, "dqn", 0)
    now = simulate(session, human, 1, 1.0)
    save_checkpoint(tmp_path / "c.pt", agent, session, now, "taxi")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["session"]["env_rng"] = {"bit_generator": "MT19937", "state": 3}
    torch.save(state, tmp_path / "c.pt")
    env2, agent2, session2, _ = build_run(config, "dqn", 0)
    rng_before = env2.unwrapped.np_random.bit_generator.state
    with pytest.raises(KobaError, match="is damaged"):
        load_checkpoint(tmp_path / "c.pt", agent2, session2, "taxi")
    assert env2.unwrapped.np_random.bit_generator.state == rng_before


# --- 2. the picture of the terminal step ----------------------------------------------------------------------
def _corridor_walker():
    env = make_env("maze", render_mode="rgb_array", layout="corridor")
    model = tabular_model(env)
    distance = model.steps_to_goal()
    agent = make_agent("dqn", env.observation_space.n, 4)
    agent.act = lambda s, explore=True: int(np.argmin([-1 if model.success[s, a] else distance[model.next_state[s, a]]
                                                       for a in range(4)]))
    return env, TrainingSession(env, agent)


def _agent_cells(env, frame) -> list[list[int]]:
    inner = env.unwrapped
    return np.argwhere((frame[::inner.cell_px, ::inner.cell_px] == (220, 50, 50)).all(-1)).tolist()


def test_the_frame_of_a_terminal_step_shows_the_agent_at_the_goal():
    """Was: the node rendered after session.step had reset the environment, so the person saw the start cell."""
    env, session = _corridor_walker()
    for t in range(20):
        record = session.step(float(t), render=True)
        assert record.frame is not None
        if record.terminated:
            break
    assert record.terminated and _agent_cells(env, record.frame) == [list(env.unwrapped.goal)]
    assert session.state == env.unwrapped.state_of(env.unwrapped.start)  # the environment was reset after it
    assert session.step(99.0).frame is None                              # not asked: nothing drawn


@pytest.mark.ros
def test_the_learner_node_publishes_the_terminal_frame(ros_context):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    node = TamerLearnerNode(context=ros_context, parameter_overrides=[Parameter("layout", value="corridor"),
                                                                      Parameter("agent", value="dqn")])
    try:
        env, walker = _corridor_walker()
        node.session.agent.act = walker.agent.act
        sent = []
        node.transition_pub.publish = lambda m: sent.append(m)
        node.image_pub.publish = lambda m: sent.append(m)
        for _ in range(20):
            node.on_step()
            if sent[-2].terminated:
                break
        image = sent[-1]
        frame = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
        assert sent[-2].terminated and _agent_cells(env, frame) == [list(env.unwrapped.goal)]
    finally:
        node.destroy_node()


# --- 3. Taxi's picture ----------------------------------------------------------------------------------------
def test_taxi_draws_its_picture():
    """Was: gymnasium's Taxi needs pygame for rgb_array, which no requirement installed: the node's first step
    raised DependencyNotInstalled inside its timer."""
    env = make_env("taxi", render_mode="rgb_array")
    session = TrainingSession(env, make_agent("dqn", 500, 6), seed=0)
    frame = session.step(0.0, render=True).frame
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    requirements = (Path(__file__).parents[1] / "requirements.txt").read_text().split()
    assert "gymnasium[toy-text]==1.4.0" in requirements


def test_a_missing_drawing_library_is_one_line():
    env = make_env("taxi", render_mode="rgb_array")
    session = TrainingSession(env, make_agent("dqn", 500, 6), seed=0)

    def no_pygame():
        raise gym.error.DependencyNotInstalled('pygame is not installed, run `pip install "gymnasium[toy-text]"`\n'
                                               "more")
    env.render = no_pygame
    with pytest.raises(KobaError, match=r"^cannot draw Taxi-v4: pygame is not installed[^\n]*$"):
        session.render()


# --- 5. agent settings are range-checked ----------------------------------------------------------------------
@pytest.mark.parametrize("item, message", [
    ("alpha_h=nan", "alpha_h must be a finite number >= 0"),
    ("q.train_every=0", "q.train_every must be a whole number >= 1"),
    ("h.train_every=0", "h.train_every must be a whole number >= 1"),
    ("q.target_every=0", "q.target_every must be a whole number >= 1"),
    ("q.batch=0", "q.batch must be a whole number >= 1"),
    ("h.batch=0", "h.batch must be a whole number >= 1"),
    ("eps_end=-3", r"eps_end must be a finite number in \[0, 1\]"),
    ("tamer_epsilon=1.5", r"tamer_epsilon must be a finite number in \[0, 1\]"),
    ("q.gamma=5", r"q.gamma must be a finite number in \[0, 1\]"),
    ("q.lr=0", "q.lr must be a finite number > 0"),
    ("explore_temperature=inf", "explore_temperature must be a finite number >= 0"),
    ("alpha_h_success_decay=0", r"alpha_h_success_decay must be a finite number in \(0, 1\]"),
    ("alpha_h_decay=1.5", r"alpha_h_decay must be a finite number in \(0, 1\]"),
    ("avoid_repeats=0.5", "avoid_repeats must be true or false"),
    ("eps_decay_steps=2.5", "eps_decay_steps must be a whole number"),
    ("q=1", "expected field=value"),
])
def test_bad_agent_settings_are_one_line_errors(item, message):
    with pytest.raises(KobaError, match=message) as info:
        with_overrides(AgentConfig(), [item])
    assert "\n" not in str(info.value)


def test_settings_in_use_stay_valid_and_the_dataclasses_check_types():
    for config in ENV_AGENT_CONFIG.values():
        assert AgentConfig(**{f: getattr(config, f) for f in config.__dataclass_fields__}) == config
    # the overrides in docs/dqn_tamer.md, the tests and the node's example
    with_overrides(TAXI_AGENT, ["alpha_h=1", "explore_temperature=0", "revisit_trust=1", "avoid_repeats=0",
                                "alpha_h=10", "eps_decay_steps_with_human=5000", "q.lr=0.003", "h.train_every=10"])
    assert with_overrides(AgentConfig(), ["avoid_repeats=1"]).avoid_repeats is True
    for bad in (dict(eps_decay_steps=5000.0), dict(eps_decay_steps=True), dict(avoid_repeats=1),
                dict(alpha_q=-1.0)):
        with pytest.raises(KobaError):
            AgentConfig(**bad)
    for cls, bad in ((QConfig, dict(batch=0)), (QConfig, dict(learn_start=-1)), (QConfig, dict(hidden=64.0)),
                     (HConfig, dict(train_every=0)), (HConfig, dict(lr=math.nan))):
        with pytest.raises(KobaError):
            cls(**bad)


# --- 6. feedback limits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    (dict(max_future_s=math.nan), "max_future_s must be a finite number >= 0"),
    (dict(max_future_s=-1.0), "max_future_s must be a finite number >= 0"),
    (dict(max_age_s=math.nan), "max_age_s must be a finite number > 0"),
    (dict(max_age_s=0.0), "max_age_s must be a finite number > 0"),
    (dict(max_rate_hz=math.inf), r"max_rate_hz \(max_feedback_rate_hz\) must be a finite number > 0"),
    (dict(burst=-5), r"burst \(feedback_burst\) must be a whole number >= 1"),
    (dict(burst=2.5), r"burst \(feedback_burst\) must be a whole number >= 1"),
])
def test_bad_feedback_limits_are_one_line_errors(bad, message):
    """Was: a NaN limit silently switched its check off; a burst of -5 rejected every feedback forever."""
    with pytest.raises(KobaError, match=message):
        FeedbackLimits(**bad)
    assert FeedbackLimits(max_future_s=0.0, max_rate_hz=20, burst=1).burst == 1  # 0 s of skew allowed is fine


@pytest.mark.ros
def test_the_learner_node_refuses_bad_rate_seed_and_limits(ros_context):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    for name, value, message in (("rate_hz", math.nan, "rate_hz must be a finite number > 0"),
                                 ("seed", -1, "seed must be >= 0"),
                                 ("max_age_s", math.nan, "max_age_s must be a finite number > 0"),
                                 ("feedback_burst", -5, "feedback_burst")):
        with pytest.raises(KobaError) as info:
            TamerLearnerNode(context=ros_context, parameter_overrides=[Parameter(name, value=value),
                                                                       Parameter("publish_image", value=False)])
        assert str(info.value).startswith("tamer_learner_node: ") and message in str(info.value)


# --- minor: the maze's refusals -------------------------------------------------------------------------------
def test_the_maze_refuses_an_unsupported_render_mode_and_a_bool_action():
    with pytest.raises(KobaError, match="render_mode must be None or one of rgb_array, got 'human'"):
        MazeEnv(render_mode="human")
    env = MazeEnv("corridor")
    env.reset(seed=0)
    for action in (True, np.bool_(False)):
        with pytest.raises(KobaError, match="maze action must be an integer 0..3"):
            env.step(action)
    assert env.steps == 0 and env.step(1)[0] == 1
