"""Session 30: fixes to this session's own changes (docs/speech.md, docs/face.md, docs/nlp.md, "Session 30: fixes to
this session's own changes"): a stop said twice keeps its reply, teleop's wall check uses the fingers' real width,
"go back to home" and "release the grip" are one command again, a smile held through a nod is one event, the model's
eos and stop ids come from one scan, one reader of tokenizer_config.json, and an export's fallback tokenizer_config."""
import json
import threading
import time

import numpy as np
import pytest

from koba_ros.errors import KobaError


@pytest.mark.ros
def test_a_second_stop_within_the_repeat_window_keeps_the_first_stops_reply(ros_context, tmp_path):
    """teleop_node answers only the first of two stops within STOP_REPEAT_S; tts_node's second on_stop dropped that
    answer as older than the second stop, so the stop was never acknowledged. Now the second stop uses the first's
    cutoff; a stop after the window, or after a teleop command (teleop_node answers both), sets its own."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from koba_ros.nodes import teleop_node, tts_node
    from koba_ros.speech.tts import Spoken

    node = tts_node.TTSNode(context=ros_context,
                            parameter_overrides=[Parameter("output_wav", value=str(tmp_path / "o.wav"))])
    playing, spoken = threading.Event(), []

    def speak(text):
        spoken.append(text)
        playing.wait(10)
        return Spoken(text, None, 1.0, False)

    node.speaker.speak = speak
    try:
        node.on_say(String(data="I did not understand the distance."))   # the robot is talking
        deadline = time.monotonic() + 5
        while not spoken and time.monotonic() < deadline:
            time.sleep(0.01)
        node.on_stop("stop", node.get_clock().now().to_msg())
        node.on_say(String(data="Holding still."))                       # teleop's answer to the first stop
        time.sleep(0.02)
        node.on_stop("stop", node.get_clock().now().to_msg())            # the second: teleop does not answer it
        assert [text for _, text in node.pending.queue] == ["Holding still."]   # was []
        assert tts_node.STOP_REPEAT_S is teleop_node.STOP_REPEAT_S   # one value, not a copy
        node.on_stop("move left 2 centimeters", teleop=False)            # /instruction: teleop_node does not hear it
        node.on_stop("stop", node.get_clock().now().to_msg())
        assert [text for _, text in node.pending.queue] == ["Holding still."]
        node.pending.stop_cutoff -= int((tts_node.STOP_REPEAT_S + 1) * 1e9)      # the first stop long ago
        node.on_stop("stop", node.get_clock().now().to_msg())
        assert node.pending.empty()                                      # a new stop drops what came before it
        node.on_say(String(data="Holding still."))
        node.on_stop("move left 2 centimeters")                          # a command: teleop answers the next stop
        node.on_say(String(data="Moved left 2 centimeters."))
        node.on_stop("stop", node.get_clock().now().to_msg())
        assert node.pending.empty()
    finally:
        playing.set()
        node.destroy_node()


@pytest.fixture(scope="module")
def planner():
    from koba_ros.teleop.jog import JogPlanner

    planner = JogPlanner()
    yield planner
    planner.close()


def _low_in_box(planner, dy: float, z: float):
    from koba_ros.picking.kinematics import top_down
    from koba_ros.sim.layout import box_regions

    cx, cy = box_regions()["top_left"].centre
    return planner.kin.ik((cx, cy + dy, z), top_down(0.0))


def test_a_jog_is_checked_with_the_fingers_real_width(planner):
    """The wall check assumed the fingers open 8 cm: low in a box with the gripper closed, the open fingers' touch
    at the start was excused and "move right 5 centimeters" drove the fingers through the wall (144 N in the sim);
    lowering a held object near a wall was refused as if the fingers were open. Now the path is checked at the
    fingers' width (or their target, when wider), a start touch is excused only where it is real at their width, and
    a move straight up is never refused."""
    from koba_ros.teleop.commands import parse_command

    q = _low_in_box(planner, -0.07, 0.03)   # 7 cm left of the box centre, low; the wall 3.5 cm beyond
    right = parse_command("move right 5 centimeters")
    for fingers in ((0.0, 0.0), (None, None)):   # closed; not known (then as open as they go, no touch excused)
        with pytest.raises(KobaError, match="hit the box"):
            planner.plan(right, q, *fingers)   # was accepted
    for fingers in ((0.0, 0.0), (0.0, 0.08), (None, None)):   # up: even while the fingers open there
        assert planner.plan(parse_command("move up 10 centimeters"), q, *fingers).kind == "jog"
    for dy in (0.05, 0.06):   # holding a 4 cm object 5-6 cm from the centre: lowering it was refused
        q = _low_in_box(planner, dy, 0.15)
        assert planner.plan(parse_command("move down 8 centimeters"), q, 0.04, 0.0).kind == "jog"
        with pytest.raises(KobaError, match="hit the box"):   # the gripper opening to 8 cm on the way
            planner.plan(parse_command("move down 8 centimeters"), q, 0.04, 0.08)


def test_a_line_touch_that_only_the_path_width_makes_is_not_excused():
    from koba_ros.picking.workspace import gripper_hit, line_hit
    from koba_ros.sim.layout import box_regions

    cx, cy = box_regions()["top_left"].centre
    start, end = np.array((cx, cy - 0.07, 0.03)), np.array((cx, cy - 0.02, 0.03))
    assert gripper_hit(start, 0.0, 0.08) == "box" and gripper_hit(start, 0.0, 0.0) is None
    assert line_hit(start, end, 0.0, 0.08) is None           # the start's own touch at 8 cm: excused, as before
    assert line_hit(start, end, 0.0, 0.08, 0.0) == "box"     # not real with the fingers closed: refused


def test_sim_teleop_plans_with_the_cells_finger_width():
    from koba_ros.teleop.session import SimTeleop

    class Cell:
        gripper_target = 0.02

        def arm_positions(self):
            return [0.0] * 7

        def gripper_width(self):
            return 0.01

    class Planner:
        def plan(self, command, q, *fingers):
            self.fingers = fingers
            raise KobaError("planned")

    teleop = SimTeleop(Cell(), Planner())
    with pytest.raises(KobaError, match="planned"):
        teleop.say("move left 1 centimeter")
    assert teleop.planner.fingers == (0.01, 0.02)


@pytest.mark.ros
def test_teleop_node_plans_with_the_fingers_width_and_its_last_gripper_command(ros_context, monkeypatch):
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import FINGER_JOINTS, HOME

    node = teleop_node.TeleopNode(context=ros_context)
    seen, plan = [], node.planner.plan
    monkeypatch.setattr(node.planner, "plan", lambda command, q, *fingers: seen.append(fingers) or
                        plan(command, q, *fingers))
    monkeypatch.setattr(node, "say_when_still", lambda text, *_: None)
    try:
        node.on_joints(JointState(name=[*ARM_JOINTS, *FINGER_JOINTS], position=[*HOME, 0.01, 0.01]))
        node.run_command("open the gripper")
        node.run_command("move up 1 centimeter")
        assert seen == [(0.02, None), (0.02, 0.08)]
    finally:
        node.destroy_node()


@pytest.mark.parametrize("text, command", [
    ("go back to home", "Home()"), ("move back to the home position", "Home()"),
    ("go back to your home position", "Home()"), ("go back home", "Home()"),
    ("release the grip", "Gripper(open=True)"), ("release your grip", "Gripper(open=True)"),
    ("open the gripper up", "Gripper(open=True)"), ("open it up", "Gripper(open=True)"),
    ("grip it", "Gripper(open=False)")])
def test_going_back_home_and_releasing_the_grip_are_one_command(text, command):
    """Session 30's one-command check refused these as two commands ("back" a jog, "grip" a close, "up" a jog)."""
    from koba_ros.teleop.commands import parse_command

    assert repr(parse_command(text)) == command


@pytest.mark.parametrize("text", ["close the gripper and move up five centimeters", "go back 5 cm and go home",
                                  "open the gripper and go back home"])
def test_two_commands_in_one_breath_are_still_refused(text):
    from koba_ros.teleop.commands import parse_command

    with pytest.raises(KobaError, match="one command at a time"):
        parse_command(text)


def test_a_grip_after_a_determiner_never_closes_the_gripper():
    """"let go of the grip" closed the gripper (grip, a close word): now it is not understood."""
    from koba_ros.teleop.commands import parse_command

    for text in ("let go of the grip", "loosen my grip"):
        with pytest.raises(KobaError, match="did not understand"):
            parse_command(text)


def test_a_smile_held_through_a_nod_is_one_event():
    """Frames whose head pitch is not read counted as frames without a face: after max_gap_s of them the debouncer
    reset, and the smile still there after the nod was reported again. Now they only move its time on; a face gone
    (no frames, or faceless ones) still ends the expression."""
    from koba_ros.face.feedback import ExpressionDebouncer

    def run(pitched):   # a smile 0-4 s at 15 fps, its head dipped 1.5-2.5 s
        debouncer, events = ExpressionDebouncer(), []
        for i in range(60):
            t = i / 15
            if 1.5 <= t < 2.5:
                pitched(debouncer, t)
            else:
                events += [e.onset for e in [debouncer.update(t, 0.8)] if e]
        return events

    assert run(lambda d, t: d.hold(t)) == [0.0]                        # was [0.0, 2.53]
    assert run(lambda d, t: d.update(t, None)) == [0.0, pytest.approx(2.53, abs=0.01)]   # a face gone: a new smile
    debouncer = ExpressionDebouncer()
    debouncer.update(0.0, 0.8)
    debouncer.hold(1.0)   # after a gap with no frames at all: reset, as update does
    assert debouncer.last_t is None and debouncer.smoothed == 0.0


def test_the_face_pipeline_holds_on_an_unread_frame(monkeypatch):
    """A frame whose cues were not read (head pitched) holds the debouncer; a read one updates it."""
    from koba_ros.face import pipeline as face_pipeline
    from koba_ros.face.expression import Expression

    calls = []
    monkeypatch.setattr(face_pipeline.ExpressionDebouncer, "hold", lambda self, t: calls.append(("hold", t)))
    monkeypatch.setattr(face_pipeline.ExpressionDebouncer, "update", lambda self, t, s: calls.append(("update", t)))
    pipeline = face_pipeline.FacePipeline.__new__(face_pipeline.FacePipeline)   # no landmark model: read is faked
    pipeline.config = face_pipeline.FaceConfig(gestures=False)
    pipeline.debouncer = face_pipeline.ExpressionDebouncer()
    pipeline.calibrator = type("Calibrated", (), {"done": True})()
    pipeline.last_t = pipeline.last_face_t = None
    for t, read in ((1.0, False), (2.0, True)):
        expression = Expression("neutral", 0, 0.0, 0.9, 0.0, read=read)
        monkeypatch.setattr(pipeline, "read", lambda frame, t, e=expression: face_pipeline.FrameResult(
            t, [], 128.0, features=object(), expression=e))
        pipeline.process(None, t)
    assert calls == [("hold", 1.0), ("update", 2.0)]   # was update(1.0, None): a frame without a face


SPECIALS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")   # ids 256, 257, 258


def byte_bpe_tokenizer(folder) -> None:
    """test_nlp_review29c's tokenizer.json (bytes 0-255, SPECIALS after them), with no tokenizer_config.json."""
    from test.test_nlp_review29c import byte_bpe_tokenizer as with_config

    with_config(folder, SPECIALS)
    (folder / "tokenizer_config.json").unlink()


def test_the_models_eos_is_the_first_of_the_stop_ids_from_the_same_file(tmp_path):
    """model_eos_id and model_eos_ids scanned the model's files with different rules: where generation_config.json's
    list began with an id that is no token, the eos came from config.json (258) and the stops from
    generation_config.json (257). Now one scan serves both: the eos is the first stop id."""
    from koba_ros.nlp.tokenizer import build_tokenizer

    byte_bpe_tokenizer(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [-1, 257]}))
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 258}))
    tok = build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    assert (tok.eos_id, tok.stop_ids) == (257, (257,))   # was 258, (258, 257)


def test_one_reader_of_tokenizer_config_json(tmp_path):
    from koba_ros.nlp import checkpoint, hf_tokenizer, tokenizer

    assert checkpoint.tokenizer_config_object is tokenizer.tokenizer_config_object
    assert hf_tokenizer.tokenizer_config_object is tokenizer.tokenizer_config_object
    (tmp_path / "a.json").write_text("[1]")
    assert tokenizer.tokenizer_config(tmp_path / "a.json") == tokenizer.tokenizer_config_object(tmp_path / "a.json") \
        == tokenizer.tokenizer_config(tmp_path / "missing.json") == {}


def test_an_export_whose_model_files_list_several_eos_ids_writes_a_tokenizer_class(tmp_path):
    """With no tokenizer_config.json beside the run's tokenizer.json and several eos ids in its model's files, export
    wrote {"eos_token": ...} alone (the record's remains), skipping the fallback that writes the class and the bos:
    transformers' AutoTokenizer then had no bos."""
    from koba_ros.nlp.hf_tokenizer import write_hf_tokenizer

    byte_bpe_tokenizer(tmp_path / "run")
    (tmp_path / "run" / "generation_config.json").write_text(json.dumps({"eos_token_id": [256, 257, 258]}))
    (tmp_path / "out").mkdir()
    write_hf_tokenizer({"tokenizer": "hf", "vocab": str(tmp_path / "run" / "tokenizer.json")}, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"}
