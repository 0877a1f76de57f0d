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
