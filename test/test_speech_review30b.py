"""Session 30 review fixes (part B): tts_node drops the replies still waiting on a stop, teleop_node answers one stop
once, and speech_node refuses the other backend's options as `koba asr` does."""
import threading
import time

import pytest

from koba_ros.errors import KobaError

pytestmark = pytest.mark.ros


def test_a_stop_drops_the_replies_still_waiting_and_its_own_reply_is_said(ros_context, tmp_path):
    """Up to 20 queued replies were all said before "Holding still.", the robot talking (hearing only early stops)
    about what no longer held. Now they are dropped; the one playing ends, and the stop's reply is said, even when it
    reached tts_node before the stop did."""
    from builtin_interfaces.msg import Time
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from koba_ros.nodes.tts_node import TTSNode
    from koba_ros.speech.tts import Spoken

    node = TTSNode(context=ros_context, parameter_overrides=[Parameter("output_wav", value=str(tmp_path / "o.wav"))])
    playing, spoken = threading.Event(), []

    def speak(text):   # plays until the test lets it end
        spoken.append(text)
        playing.wait(10)
        return Spoken(text, None, 1.0, False)

    node.speaker.speak = speak
    try:
        assert {"/speech/utterance", "/teleop/command", "/instruction"} <= {s.topic_name for s in node.subscriptions}
        for text in ("Okay, I'll move the duck to the top left box.", "Moved left 5 centimeters.",
                     "Closed the gripper."):
            node.on_say(String(data=text))
        deadline = time.monotonic() + 5
        while not spoken and time.monotonic() < deadline:
            time.sleep(0.01)
        node.on_stop("move up two centimeters")        # not a stop: nothing dropped
        assert node.pending.qsize() == 2
        heard = node.get_clock().now().to_msg()         # the stop, stamped by speech_node ...
        node.on_say(String(data="Holding still."))      # ... its reply overtakes it on the way here
        node.on_stop("stop", heard)
        assert [text for _, text in node.pending.queue] == ["Holding still."]
        node.on_stop("go home")   # a command between the stops: teleop_node answers the next one (STOP_REPEAT_S)
        node.on_say(String(data="Back home."))
        node.on_stop("halt", Time())                    # unstamped (typed): what came before it got here goes
        node.on_say(String(data="Holding still."))
        assert [text for _, text in node.pending.queue] == ["Holding still."]
        playing.set()
        deadline = time.monotonic() + 5
        while (len(spoken) < 2 or not node.pending.empty()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert spoken == ["Okay, I'll move the duck to the top left box.", "Holding still."]
    finally:
        playing.set()
        node.destroy_node()


def test_a_stop_heard_twice_is_answered_once_but_every_stop_holds(ros_context, monkeypatch):
    """An early "stop" and then the utterance's own "stop moving" were both answered "Holding still.". The second is
    now quiet when it comes within STOP_REPEAT_S with no command between; it still holds the arm, and a stop after a
    command (that may have started a motion) or after the window is answered."""
    from sensor_msgs.msg import JointState

    from koba_ros.nodes import teleop_node
    from koba_ros.picking.kinematics import ARM_JOINTS
    from koba_ros.sim.cell import HOME

    node = teleop_node.TeleopNode(context=ros_context)
    sent, said, clock = [], [], [100.0]
    monkeypatch.setattr(node.traj_pub, "publish", lambda msg: sent.append(len(msg.points)))
    monkeypatch.setattr(node, "reply", said.append)
    monkeypatch.setattr(node, "say_when_still", lambda text, *_: None)   # the jog's reply is not this test's
    monkeypatch.setattr(teleop_node.time, "monotonic", lambda: clock[0])
    try:
        node.on_joints(JointState(name=list(ARM_JOINTS), position=list(HOME)))
        node.run_command("stop")
        clock[0] += 0.8
        node.run_command("stop moving")
        node.run_command("hello there")            # junk: no command, nothing moved
        node.run_command("halt")
        assert sent == [0, 0, 0] and said == ["Holding still."]
        node.run_command("move up five centimeters")
        assert len(sent) == 4 and sent[3] > 1
        node.run_command("stop")                   # stops the jog that started in between, and says so
        assert sent[4] == 0 and said == ["Holding still."] * 2
        clock[0] += teleop_node.STOP_REPEAT_S + 0.1
        node.run_command("stop")                   # long after: answered
        assert sent[5] == 0 and said == ["Holding still."] * 3
    finally:
        node.destroy_node()


@pytest.mark.parametrize("overrides, failure", [
    ({"checkpoint": "/models/whisper.pt"}, "checkpoint is for backend whisper"),
    ({"backend": "whisper", "checkpoint": "/no/such.pt", "use_domain_lm": False}, "use_domain_lm is for backend "
     "pocketsphinx"),
    ({"backend": "whisper", "checkpoint": "/no/such.pt", "stop_threshold": 0.0}, "stop_threshold is for backend "
     "pocketsphinx"),
    # config/speech_node.yaml gives every option at its default: that is no option set for the other backend
    ({"backend": "whisper", "checkpoint": "/no/such.pt", "use_domain_lm": True, "stop_threshold": 1e-15,
      "keyword_max_words": 0, "quiet_stop_threshold": 1e-50}, "made a whisper recogniser"),
])
def test_speech_node_refuses_the_other_backends_options_as_koba_asr_does(ros_context, monkeypatch, overrides, failure):
    """speech_node ignored a checkpoint under pocketsphinx and the pocketsphinx options under whisper; `koba asr`
    refused the same mix. One check serves both, each in its own words."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.speech_node import SpeechNode
    from koba_ros.speech import recognizers

    def made(backend, **options):   # past the check (whisper itself takes a second to import)
        raise KobaError(f"made a {backend} recogniser")

    monkeypatch.setattr(recognizers, "make_recognizer", made)
    node = SpeechNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert node.failure.startswith(failure) and "\n" not in node.failure
    finally:
        node.destroy_node()
    with pytest.raises(KobaError, match="^--checkpoint is for --backend whisper$"):   # koba asr's words
        recognizers.check_backend_options("pocketsphinx", ["checkpoint"], "--")
