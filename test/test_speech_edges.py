"""A person's utterance across a change of the robot's speaking state (session 26; bench/stops_at_the_edges.py): it is
no longer dropped at the change, and only an early stop can come out of it. The first test runs the old behaviour
(`drop_at_speaking_change`) too."""
import numpy as np
import pytest

from koba_ros.speech.audio import RATE, load_audio


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from koba_ros.speech.tts import Speaker

    folder = tmp_path_factory.mktemp("edges")
    pad = np.zeros(RATE // 2, dtype=np.int16)
    out = {}
    for voice, text in (("en-us", "stop"), ("en-us", "open the gripper"), ("en-us", "Moved left 5 centimeters.")):
        Speaker(voice, 150, play=False).synthesize(text, folder / "s.wav")
        out[text] = np.concatenate([pad, load_audio(folder / "s.wav"), pad])
    return out


def stream(**options):
    from koba_ros.speech.recognizers import PocketsphinxRecognizer
    from koba_ros.speech.streaming import SpeechStream

    return SpeechStream(PocketsphinxRecognizer(), **options)


def feed(s, audio, changes=None):
    changes = changes or {}
    out = []
    for i in range(0, len(audio), 480):
        if i in changes:
            s.set_speaking(changes[i])
        out += s.feed(audio[i:i + 480])
    return [(u.text, u.early) for u in out + s.flush()]


@pytest.mark.parametrize("old", [True, False])
def test_a_stop_said_as_the_robot_falls_silent_is_not_lost(clips, old):
    """The speaking state turns off 0.1 s into the person's "stop": the utterance used to be dropped there, and the
    rest of it was heard as "op"."""
    heard = feed(stream(drop_at_speaking_change=old), clips["stop"], {0: True, int(0.6 * RATE) // 480 * 480: False})
    texts = [text for text, _ in heard]
    assert ("stop" not in texts and "op" in texts) if old else texts == ["stop"]


def test_only_an_early_stop_comes_out_of_an_utterance_that_overlapped_the_robots_voice(clips):
    """The robot never answers its own voice: its reply, or a command begun while it talked and ended after, gives
    nothing (the old behaviour decoded the command's rest as a new utterance); an early stop is published once."""
    s = stream()
    assert feed(s, clips["Moved left 5 centimeters."], {0: True, len(clips["Moved left 5 centimeters."]) // 480 * 480
                                                       - 4800: False}) == []
    gripper = clips["open the gripper"]
    assert feed(s, gripper, {0: True, len(gripper) // 2 // 480 * 480: False}) == []
    assert feed(s, gripper, {0: False, len(gripper) // 2 // 480 * 480: True}) == []   # the robot starts talking
    assert feed(s, clips["stop"], {0: True}) == [("stop", True)]
    s.set_speaking(False)
    assert feed(s, gripper) == [("open the gripper", False)]   # the same words with the robot silent
