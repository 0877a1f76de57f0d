"""Session 24 review fixes in face feedback and DQN-TAMER: a negative image or transition stamp no longer kills a node,
a gap without frames ends an expression (and, past forget_s, the calibration), the largest usable face is read,
checkpoints are written atomically and a failed save is one logged line, a resumed session credits no step from
before the shutdown, NaN half_life / negative seed / save_every_episodes < 1 are refused, and rejected feedback
spends no rate-limit token."""
import copy
import math

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.face.feedback import ExpressionDebouncer
from koba_ros.face.landmarks import Face
from koba_ros.face.pipeline import FaceConfig, FacePipeline
from koba_ros.rl.agents import make_agent
from koba_ros.rl.bench import BenchConfig, build_run
from koba_ros.rl.credit import DEFAULT_DELAY, CreditAssigner
from koba_ros.rl.envs import make_env
from koba_ros.rl.human import HumanConfig
from koba_ros.rl.session import FeedbackLimits, TrainingSession
from koba_ros.rl.train import load_checkpoint, save_checkpoint

FRAME = np.full((480, 640, 3), 128, np.uint8)


def _faces():
    """Synthetic (468, 3) landmarks: a neutral face and the same face smiling (as in test_face_review22.py)."""
    rng = np.random.default_rng(0)
    neutral = rng.uniform(100, 300, (468, 3))
    neutral[33], neutral[263] = (150, 200, 0), (250, 200, 0)
    neutral[61], neutral[291], neutral[13], neutral[14] = (170.5, 300, 0), (229.5, 300, 0), (200, 299, 0), (200, 301, 0)
    smile = neutral.copy()
    smile[61], smile[291] = (165, 290, 0), (235, 290, 0)
    return neutral, smile


class _Detector:
    faces: list = []

    def detect(self, rgb):
        return sorted(self.faces, key=lambda f: f.area, reverse=True)

    def close(self):
        pass


def _pipeline(**config) -> FacePipeline:
    pipeline = FacePipeline(FaceConfig(gestures=False, **config))
    pipeline.detector.close()
    pipeline.detector = _Detector()
    return pipeline


# --- 1. a negative image stamp ---------------------------------------------------------------------------------
@pytest.mark.ros
def test_the_face_node_drops_an_image_with_a_negative_stamp(ros_context):
    """Was: Time.from_msg raised ValueError out of the subscription callback and the node died."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from koba_ros.face.frames import rgb_to_image_fields
    from koba_ros.nodes.face_feedback_node import FaceFeedbackNode

    node = FaceFeedbackNode(context=ros_context, parameter_overrides=[Parameter("source", value="topic")])
    try:
        frames = []
        node.on_frame = lambda rgb, stamp, frame_id: frames.append(stamp.nanoseconds)
        msg = Image(**rgb_to_image_fields(FRAME))
        msg.header.stamp.sec = -5
        node.on_image(msg)
        assert frames == []
        msg.header.stamp.sec = 7
        node.on_image(msg)
        assert frames == [7_000_000_000]
    finally:
        node.destroy_node()


# --- 2. a gap without frames ----------------------------------------------------------------------------------
def test_a_gap_without_frames_ends_an_expression():
    """Was: the debouncer only reset on a faceless frame; when frames simply stopped, a smile at t=10 was stamped
    with the onset of a smile at t=0 (10 s too early)."""
    debouncer = ExpressionDebouncer()
    times = [i / 15 for i in range(3)] + [10 + i / 15 for i in range(10)]
    events = [e for e in (debouncer.update(t, 0.9) for t in times) if e]
    assert [(round(e.onset, 3), round(e.decided, 3)) for e in events] == [(10.0, 10.267)]


def test_a_gap_without_frames_past_forget_s_recalibrates():
    """Was: forget_s applied only to faceless frames; a face after 10 s without any frame kept the old neutral."""
    neutral, _ = _faces()
    pipeline = _pipeline(calibration_s=0.5)
    pipeline.detector.faces = [Face(neutral, (640, 480))]
    for i in range(15):
        pipeline.process(FRAME, i / 15)
    assert not pipeline.calibrating
    pipeline.process(FRAME, 3.0)   # under forget_s (5 s) since the last face: kept
    assert not pipeline.calibrating
    pipeline.process(FRAME, 10.0)  # 7 s without any frame: maybe another person
    assert pipeline.calibrating


# --- 6. the largest usable face -------------------------------------------------------------------------------
def test_a_bigger_face_cut_by_the_edge_does_not_hide_the_usable_one():
    """Was: only faces[0] (the largest) was checked; a bystander cut by the frame's edge blocked the smiling face."""
    neutral, smile = _faces()
    bystander = neutral * 1.5
    bystander[:, 0] -= 300  # about half of it left of the frame
    pipeline = _pipeline(calibration_s=0.0)
    usable = Face(smile, (640, 480))
    pipeline.detector.faces = [Face(bystander, (640, 480)), usable]
    assert pipeline.detector.detect(FRAME)[0].visible_fraction < 0.9  # it is the largest, and at the edge
    result = pipeline.read(FRAME, 0.0)
    assert result.skipped == "" and result.face is usable and result.expression.value == 1
    pipeline.detector.faces = [Face(bystander, (640, 480))]  # nothing usable: the largest face's reason
    assert pipeline.read(FRAME, 0.0).skipped.startswith("face at the edge of the frame")


# --- 3. checkpoints -------------------------------------------------------------------------------------------
def _run(steps: int = 30):
    _, agent, session, _ = build_run(BenchConfig(env="maze", layout="corridor", agents=("dqn_tamer",), seeds=1),
                                     "dqn_tamer", 0)
    for t in range(steps):
        session.step(float(t))
    return agent, session


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    """Was: torch.save wrote straight onto checkpoint.pt, so a save that failed half way tore the only copy."""
    import torch

    agent, session = _run()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, agent, session, 30.0, "maze")
    real_save = torch.save

    def torn(obj, f):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError):
        save_checkpoint(path, agent, session, 31.0, "maze")
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left either
    agent2, session2 = _run(0)
    assert load_checkpoint(path, agent2, session2, "maze") == 30.0


@pytest.mark.ros
def test_a_failed_save_in_the_learner_node_is_logged_not_raised(ros_context, tmp_path):
    """Was: save() raised out of the timer (and destroy_node), ending the learner."""
    from rclpy.parameter import Parameter

    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    out = tmp_path / "run"
    node = TamerLearnerNode(context=ros_context, parameter_overrides=[Parameter("output_dir", value=str(out)),
                                                                      Parameter("publish_image", value=False)])
    try:
        for _ in range(3):
            node.on_step()
        (out / "checkpoint.pt").mkdir()  # stands in for any OSError at save time
        node.save()
        assert (out / "checkpoint.pt").is_dir()
    finally:
        node.output_dir = ""
        node.destroy_node()


@pytest.mark.ros
def test_the_learner_node_refuses_save_every_below_one(ros_context):
    from rclpy.parameter import Parameter

    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    for value in (0, -5):
        with pytest.raises(KobaError, match="^tamer_learner_node: save_every_episodes must be >= 1, got"):
            TamerLearnerNode(context=ros_context, parameter_overrides=[Parameter("save_every_episodes", value=value),
                                                                       Parameter("publish_image", value=False)])


# --- 4. no credit to a step from before the shutdown ----------------------------------------------------------
def test_a_resumed_session_credits_no_step_shown_before_the_save(tmp_path):
    """Was: the step on screen at the save came back with end=inf, so with the interval model feedback an hour later
    gave it the full weight."""
    def session():
        agent = make_agent("dqn_tamer", 100, 4)
        return agent, TrainingSession(make_env("maze"), agent, CreditAssigner(DEFAULT_DELAY, "interval"))

    agent, s = session()
    for t in range(5):
        s.step(float(t))
    state, agent_state = copy.deepcopy(s.state_dict()), copy.deepcopy(agent.state_dict())
    agent2, s2 = session()
    agent2.load_state_dict(agent_state)
    s2.load_state_dict(state)
    assert s2.credit.assign(3600.5) == []
    with pytest.raises(KobaError, match="^nothing to credit"):
        s2.feedback(1.0, 3600.5, 3601.0)
    # through a checkpoint, the step is closed at the saved clock: feedback just after the save still reaches it
    save_checkpoint(tmp_path / "c.pt", agent, s, 5.0, "maze")
    agent3, s3 = session()
    load_checkpoint(tmp_path / "c.pt", agent3, s3, "maze")
    assert s3.credit.steps[-1].end == 5.0 and s3.credit.assign(3600.5) == []
    assert [c.state for c in s3.credit.assign(5.2)] == [c.state for c in s.credit.assign(5.2)]


# --- 5. the simulated human -----------------------------------------------------------------------------------
def test_a_nan_half_life_is_refused():
    """Was: NaN < 0 is False, so half_life=nan passed and p_feedback became NaN (a reaction to every step)."""
    with pytest.raises(KobaError, match="^half_life must be >= 0"):
        HumanConfig(half_life=math.nan)
    assert HumanConfig(half_life=0.0).half_life == 0.0


@pytest.mark.ros
def test_the_simulated_human_node_refuses_a_negative_seed_and_stamp(ros_context):
    """Was: seed:=-1 was a bare ValueError traceback, and a transition stamped before 0 made on_tick raise."""
    from koba_interfaces.msg import TamerTransition
    from rclpy.parameter import Parameter

    from koba_ros.nodes.simulated_human_node import SimulatedHumanNode

    with pytest.raises(KobaError, match="^simulated_human_node: seed must be >= 0, got -1"):
        SimulatedHumanNode(context=ros_context, parameter_overrides=[Parameter("seed", value=-1)])
    node = SimulatedHumanNode(context=ros_context, parameter_overrides=[Parameter("p_feedback", value=1.0),
                                                                        Parameter("half_life", value=0.0)])
    try:
        msg = TamerTransition(env="maze", total_steps=1, state=0, action=1, next_state=1)
        msg.header.stamp.sec = -5
        node.on_transition(msg)
        assert node.human.pending == [] and node.human.observed == 0
        node.on_tick()
        msg.header.stamp.sec = 5
        node.on_transition(msg)
        assert len(node.human.pending) == 1
    finally:
        node.destroy_node()


# --- optional: rejected feedback spends no rate-limit token ---------------------------------------------------
def test_feedback_with_nothing_to_credit_spends_no_token():
    """Was: the token was taken before the 'no step yet' / 'nothing to credit' checks, so rejected feedback used up
    the burst and the next good one was dropped as 'too fast'."""
    agent = make_agent("dqn_tamer", 100, 4)
    s = TrainingSession(make_env("maze"), agent, limits=FeedbackLimits(max_rate_hz=0.001, burst=1))
    with pytest.raises(KobaError, match="^no step yet"):
        s.feedback(1.0, 0.0, 0.0)
    s.step(0.0)
    with pytest.raises(KobaError, match="^nothing to credit"):
        s.feedback(1.0, 0.1, 0.1)  # before the delay window's 0.2 s
    assert s.feedback(1.0, 0.6, 0.6) == 1
    with pytest.raises(KobaError, match="^too fast"):
        s.feedback(1.0, 0.7, 0.7)
    assert s.rejected == {"no step yet": 1, "nothing to credit": 1, "too fast": 1}
