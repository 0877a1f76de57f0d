"""Review 24 of speech and teleop: each test failed on the code before its fix."""
import threading
import time

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE, load_audio
from koba_ros.teleop.commands import Jog, Stop, parse_command


def spoken(text, tmp_path, voice, rate=150):
    from koba_ros.speech.tts import Speaker

    Speaker(voice, rate, play=False).synthesize(text, tmp_path / "s.wav")
    pad = np.zeros(RATE // 2, dtype=np.int16)
    return np.concatenate([pad, load_audio(tmp_path / "s.wav"), pad])


def stream_through(stream, audio):
    return [u for i in range(0, len(audio), 480) for u in stream.feed(audio[i:i + 480])]


# --- 1 and 4: the parser -------------------------------------------------------------------------------------------
def test_a_long_run_of_half_is_refused_in_one_line_not_a_recursion_error():
    for text in ("move left " + "half " * 1100, "move left " + "hundred " * 30, "move left " + "9" * 400):
        with pytest.raises(KobaError) as info:
            parse_command(text)
        assert "\n" not in str(info.value) and len(str(info.value)) < 120
    assert parse_command("stop " + "half " * 1100) == Stop()   # stop still wins, however long


@pytest.mark.parametrize("text, metres", [
    ("move left .5 cm", 0.005),                      # was 5 cm: the point was dropped
    ("move left 0.5 cm", 0.005),
    ("move left a centimeter and a half", 0.015),    # was 0.5 cm: "a" counted as nothing
    ("move up an inch and a half", 0.0381),
    ("move left one and a half centimeters", 0.015),
    ("move up a hundred and five millimeters", 0.105),
    ("move left twenty five", 0.25),
    ("move left half a centimeter", 0.005),
    ("move left a little", 0.01),
])
def test_well_formed_distances(text, metres):
    command = parse_command(text)
    assert isinstance(command, Jog) and command.distance == pytest.approx(metres)


@pytest.mark.parametrize("text, reply", [
    ("move left two centimeters and five millimeters", "Please give the distance in one unit."),   # was 7 cm
    ("move left 5 cm 3 mm", "Please give the distance in one unit."),
    ("move left five five", 'I did not understand the distance "five five".'),                 # was 10 cm
    ("move left five twenty", 'I did not understand the distance "five twenty".'),             # was 25 cm
    ("move left twenty twenty", 'I did not understand the distance "twenty twenty".'),          # was 40 cm
    ("move left one hundred hundred", 'I did not understand the distance "one hundred hundred".'),
    ("move left twenty and five", 'I did not understand the distance "twenty and five".'),
    ("move left five and a half half", 'I did not understand the distance "five and a half half".'),
    ("move left 2.5.3 cm", 'I did not understand the distance "2.5 .3".'),
])
def test_garbled_distances_are_refused_not_summed(text, reply):
    with pytest.raises(KobaError) as info:
        parse_command(text)
    assert str(info.value) == reply


# --- 1 and 9: teleop_node --------------------------------------------------------------------------------------------
@pytest.mark.ros
def test_teleop_node_survives_a_failing_command_and_junk_cancels_no_plan(ros_context, monkeypatch):
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said = [], []
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", said.append)
    monkeypatch.setattr(node, "say_when_still", lambda text, *_: said.append(text))   # no executor spins here
    try:
        node.run_command("move left " + "half " * 1100)   # was a RecursionError out of the callback
        assert said[-1].startswith("That is too long for a command")
        real_plan = node.planner.plan
        monkeypatch.setattr(node.planner, "plan", lambda *a: 1 / 0)   # any bug below the node
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        node.run_command("move up five centimeters")
        assert said[-1] == teleop_node.FAILED and sent == []
        monkeypatch.setattr(node.planner, "plan", real_plan)
        real = teleop_node.trajectory_to_msg

        def junk_meanwhile(traj):  # an utterance that is no command, heard while the jog's message is built
            node.run_command("the blue")
            return real(traj)

        monkeypatch.setattr(teleop_node, "trajectory_to_msg", junk_meanwhile)
        node.run_command("move up five centimeters")
        assert len(sent) == 1 and sent[0] > 1, sent   # the jog went out
        assert said[-2:] == ['I did not understand "the blue".', "Moved up 5 centimeters."]
    finally:
        node.destroy_node()


# --- 2: a spoken stop while the robot talks ----------------------------------------------------------------------
@pytest.mark.parametrize("text, voice", [("stop", "en-us"), ("stop moving", "en-us"), ("stop moving", "en-gb")])
def test_a_stop_gets_through_while_the_robot_talks(tmp_path, text, voice):
    """The stop clips of test_speech_stop: with /speech/speaking true the input used to be replaced by silence, so a
    jog announced by the robot (up to ~20 cm) could not be stopped by voice. Now only the early stop goes out."""
    from koba_ros.speech.recognizers import PocketsphinxRecognizer
    from koba_ros.speech.streaming import SpeechStream

    stream = SpeechStream(PocketsphinxRecognizer())
    stream.set_speaking(True)
    heard = stream_through(stream, spoken(text, tmp_path, voice)) + stream.flush()
    assert [(u.text, u.early) for u in heard] == [("stop", True)]


def test_the_robots_own_replies_are_still_not_heard(tmp_path):
    """The robot's voice while it talks gives nothing, the stop reply included (it used to be "Stopping.", which the
    recogniser hears as an early "stop": a loop of stops on a live microphone); an utterance still open when the
    robot falls silent is dropped."""
    from koba_ros.speech.recognizers import PocketsphinxRecognizer
    from koba_ros.speech.streaming import SpeechStream
    from koba_ros.teleop.jog import STOP_REPLY

    stream = SpeechStream(PocketsphinxRecognizer())
    for voice in ("en-us", "en-gb"):
        for reply in (STOP_REPLY, "Moved left 5 centimeters.", "Opened the gripper."):
            stream.set_speaking(True)
            heard = stream_through(stream, spoken(reply, tmp_path, voice, rate=160))
            stream.set_speaking(False)
            assert heard == [] and stream.flush() == [], (voice, reply)
    audio = spoken("open the gripper", tmp_path, "en-us")
    stream.set_speaking(True)
    half = len(audio) // 2
    heard = stream_through(stream, audio[:half])
    stream.set_speaking(False)   # the robot stops mid-sentence: the rest of its voice is no command
    heard += stream_through(stream, audio[half:half + 4800]) + stream_through(stream, np.zeros(RATE, np.int16))
    assert all(u.text != "open the gripper" for u in heard), heard


# --- 3, 5, 6, 7, 10: speech_node ---------------------------------------------------------------------------------
def wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.ros
def test_an_utterance_cut_by_deactivate_is_not_published_after_activate(ros_context, tmp_path):
    from koba_ros.nodes.speech_node import SpeechNode

    command = spoken("move up ten centimeters", tmp_path, "en-us")
    command = command[: np.nonzero(np.abs(command) > 300)[0][-1] + 1]   # cut at the last word: still open
    node = SpeechNode(context=ros_context)
    published, fed = [], []
    node.publish = lambda u: published.append(u.text)
    try:
        node.trigger_configure()
        real_feed = node.stream.feed
        node.stream.feed = lambda chunk: (fed.append(len(chunk)), real_feed(chunk))[-1]
        node.trigger_activate()
        chunks = [command[i:i + 480] for i in range(0, len(command), 480)]
        for chunk in chunks:
            node.enqueue(chunk)
        assert wait(lambda: len(fed) == len(chunks) and node.stream.in_utterance)
        node.trigger_deactivate()
        node.trigger_activate()
        for _ in range(40):                               # 1.2 s of silence would end the old utterance
            node.enqueue(np.zeros(480, np.int16))
        assert wait(lambda: len(fed) == len(chunks) + 40)
        assert published == []
        for chunk in [*chunks, *[np.zeros(480, np.int16)] * 40]:   # the same words, whole, are heard
            node.enqueue(chunk)
        assert wait(lambda: published != [])
        assert len(published) == 1 and published[0].startswith("move up"), published   # ("ten" is often "two")
    finally:
        node.trigger_deactivate()
        node.destroy_node()


@pytest.mark.ros
def test_a_file_played_faster_than_real_time_is_decoded_whole_and_one_player_runs(ros_context, tmp_path):
    import soundfile
    from rclpy.parameter import Parameter

    from koba_ros.nodes.speech_node import SpeechNode

    audio = (100 * np.random.default_rng(0).standard_normal(60 * RATE)).astype(np.int16)   # 2000 chunks
    soundfile.write(tmp_path / "long.wav", audio, RATE, subtype="PCM_16")
    node = SpeechNode(context=ros_context, parameter_overrides=[
        Parameter("source", value="file"), Parameter("wav_file", value=str(tmp_path / "long.wav")),
        Parameter("realtime_file", value=False)])
    fed = []
    try:
        node.trigger_configure()
        node.stream.feed = lambda chunk: (fed.append(len(chunk)), time.sleep(0.0005), [])[-1]   # a slow decoder
        node.trigger_activate()
        assert wait(lambda: sum(fed) == len(audio) + RATE), (sum(fed), len(audio) + RATE)   # was under half
        node.trigger_deactivate()
        node.realtime_file = True
        node.trigger_activate()
        time.sleep(0.1)             # the player is between two chunks
        node.trigger_deactivate()   # then at once: the first player used to miss its stop and run beside the next one
        node.trigger_activate()
        time.sleep(0.2)
        players = [t for t in threading.enumerate() if "play_file" in t.name and t.is_alive()]
        assert players == [node.player], players
    finally:
        node.trigger_deactivate()
        node.destroy_node()


@pytest.mark.ros
def test_a_bad_audio_topic_fails_configure_and_a_failed_activate_leaves_no_worker(ros_context, monkeypatch):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.speech_node import SpeechNode

    node = SpeechNode(context=ros_context, parameter_overrides=[Parameter("audio_topic", value="bad topic!")])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.failure.startswith("audio_topic: topic name 'bad topic!' is invalid")
        assert "\n" not in node.failure and node.worker is None
    finally:
        node.destroy_node()
    node = SpeechNode(context=ros_context)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS

        def refuse(*args, **kwargs):
            raise RuntimeError("no such middleware")

        monkeypatch.setattr(node, "create_subscription", refuse)
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert node.failure == "activate failed: no such middleware"
        assert not node.worker.is_alive() and node.audio.token is None
    finally:
        node.destroy_node()


def test_audio_with_no_worker_is_dropped_not_queued():
    from koba_ros.speech.decode_queue import DecodeQueue

    q = DecodeQueue(maxsize=10)
    assert all(q.put_audio(np.zeros(480, np.int16)) for _ in range(30))   # configured, inactive: not "behind"
    assert q.items.empty()
    q.start()
    q.put_audio(np.zeros(480, np.int16))
    assert q.items.qsize() == 2   # the initial speaking state and the chunk


# --- 8: tts ---------------------------------------------------------------------------------------------------------
def test_an_unknown_voice_is_refused_when_the_speaker_is_made():
    from koba_ros.speech.tts import Speaker

    with pytest.raises(KobaError, match="voice 'xx-nope' does not work") as info:
        Speaker("xx-nope", play=False)
    assert "\n" not in str(info.value)
    assert Speaker("en-us+m3", play=False).voice == "en-us+m3"
