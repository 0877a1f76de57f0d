"""espeak-ng text-to-speech core (used by tts_node and `koba say`)."""
import os

import numpy as np
import pytest
import soundfile

from koba_ros.errors import KobaError
from koba_ros.speech.tts import MAX_CHARS, Speaker


def test_synthesize_writes_real_speech(tmp_path):
    out = tmp_path / "hello.wav"
    duration = Speaker(play=False).synthesize("put the red cube in the top right box", out)
    audio, rate = soundfile.read(out)
    assert 1.0 < duration < 6.0
    assert rate in (16000, 22050)
    assert np.abs(audio).max() > 0.05  # not silence


def test_text_is_never_an_option_or_a_shell_command(tmp_path):
    marker = tmp_path / "pwned"
    speaker = Speaker(play=False)
    for text in ("-w /etc/passwd", f"; touch {marker}", f"$(touch {marker})", "--help"):
        assert speaker.synthesize(text, tmp_path / "x.wav") > 0.1
    assert not marker.exists()


@pytest.mark.parametrize("text", ["", "   ", "x" * (MAX_CHARS + 1)])
def test_bad_text_is_a_one_line_error(text, tmp_path):
    with pytest.raises(KobaError) as info:
        Speaker(play=False).synthesize(text, tmp_path / "x.wav")
    assert "\n" not in str(info.value)


def test_bad_rate_is_rejected():
    with pytest.raises(KobaError, match="rate"):
        Speaker(rate=5000)


def test_speak_without_device_goes_to_file(tmp_path):
    out = tmp_path / "said.wav"
    spoken = Speaker(output_wav=str(out), play=False).speak("hello")
    assert spoken.wav_path == str(out) and os.path.getsize(out) > 1000 and not spoken.played


@pytest.mark.parametrize("text", ["\x01", "\x01\x02 \x7f", "!!! ...", "?"])
def test_text_with_nothing_to_speak_is_a_one_line_error(text, tmp_path):
    with pytest.raises(KobaError, match="nothing to say") as info:
        Speaker(play=False).synthesize(text, tmp_path / "x.wav")
    assert "\n" not in str(info.value)
    assert Speaker(play=False).check_text("open\x07 the gripper") == "open the gripper"


def test_an_output_wav_that_cannot_be_written_is_refused_up_front(tmp_path):
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile" / "x.wav", tmp_path, "/dev/null"):
        with pytest.raises(KobaError, match="cannot write a WAV file") as info:
            Speaker(output_wav=str(bad), play=False)
        assert "\n" not in str(info.value)
    speaker = Speaker(play=False)
    with pytest.raises(KobaError, match="cannot write a WAV file"):
        speaker.synthesize("hello", tmp_path / "afile" / "y.wav")


@pytest.mark.ros
def test_the_tts_node_keeps_speaking_after_a_sentence_fails_unexpectedly(ros_context, tmp_path):
    """A failure that is not a KobaError (a bug, a full disk) is logged; the worker goes on to the next sentence."""
    import time

    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from koba_ros.nodes.tts_node import TTSNode

    node = TTSNode(context=ros_context,
                   parameter_overrides=[Parameter("output_wav", value=str(tmp_path / "said.wav"))])
    spoken, real_speak = [], node.speaker.speak

    def speak(text):
        if not spoken:
            spoken.append(None)
            raise OSError(28, "No space left on device")
        spoken.append(real_speak(text))
        return spoken[-1]

    node.speaker.speak = speak
    try:
        node.on_say(String(data="first"))
        node.on_say(String(data="open the gripper"))
        deadline = time.monotonic() + 30
        while len(spoken) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.worker.is_alive() and len(spoken) == 2 and spoken[1].text == "open the gripper"
    finally:
        node.destroy_node()


def test_espeak_that_cannot_start_for_a_moment_is_tried_again_and_never_blamed_on_the_voice(monkeypatch, tmp_path):
    """Under load fork failed with EAGAIN and Speaker said "voice 'en-gb' does not work" (a bench run, session 25)."""
    import errno
    import subprocess

    from koba_ros.speech import tts

    real_run, calls = subprocess.run, []
    monkeypatch.setattr(tts, "RETRY_SPAWN_S", (0.0, 0.0))

    def busy_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(tts.subprocess, "run", busy_twice)
    assert Speaker("en-gb", 160, play=False).synthesize("hello", tmp_path / "a.wav") > 0
    monkeypatch.setattr(tts.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(
        BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")))
    with pytest.raises(KobaError, match="^could not start espeak-ng: .*Resource temporarily unavailable") as info:
        Speaker("en-gb", 160, play=False)
    assert "voice" not in str(info.value)
