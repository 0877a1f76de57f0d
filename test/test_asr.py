"""Real ASR: pocketsphinx with the domain LM on a real recording and on espeak-ng speech; bad audio says nothing."""
from pathlib import Path

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE, load_audio
from koba_ros.speech.recognizers import PocketsphinxRecognizer, make_recognizer
from koba_ros.speech.streaming import SpeechStream, transcribe
from koba_ros.speech.tts import Speaker

GOFORWARD = Path("/usr/share/pocketsphinx/test/data/goforward.raw")


@pytest.fixture(scope="module")
def recognizer():
    return PocketsphinxRecognizer()


def spoken(text, tmp_path, voice="en-us"):
    Speaker(voice, 150, play=False).synthesize(text, tmp_path / "s.wav")
    pad = np.zeros(RATE // 2, dtype=np.int16)
    return np.concatenate([pad, load_audio(tmp_path / "s.wav"), pad])


@pytest.mark.skipif(not GOFORWARD.is_file(), reason="needs Debian pocketsphinx-testdata (setup.sh installs it)")
def test_real_recording_word_for_word(recognizer):
    utterances = transcribe(recognizer, load_audio(GOFORWARD))
    assert [u.text for u in utterances] == ["go forward ten meters"]
    assert utterances[0].backend == "pocketsphinx" and 0 < utterances[0].confidence <= 1


def test_domain_commands_from_espeak(recognizer, tmp_path):
    for text in ("open the gripper", "put the red cup in the top left box"):
        got = " ".join(u.text for u in transcribe(recognizer, spoken(text, tmp_path)))
        assert got == text


def test_silence_and_noise_give_no_words(recognizer):
    rng = np.random.default_rng(0)
    assert transcribe(recognizer, np.zeros(2 * RATE, dtype=np.int16)) == []
    noise = (3000 * rng.standard_normal(2 * RATE)).astype(np.int16)
    assert all(u.text == "" for u in transcribe(recognizer, noise))


@pytest.mark.parametrize("voice", ["en-us", "en-gb"])
def test_clipped_speech_never_becomes_a_motion_that_was_not_said(tmp_path, voice):
    """Clipping costs words fast (measured, fresh recognisers: x2 → "open the gripper" / "put the green", x8 →
    "stop" for both voices), so the words are not asserted. What must hold: the result is the command said, no
    command at all, or a stop (the safe side; docs/speech.md: loud clipped commands can come out as "stop")."""
    from koba_ros.speech.recognizers import is_command
    from koba_ros.teleop.commands import is_stop

    audio = spoken("open the gripper", tmp_path, voice).astype(np.int32)
    for gain in (2, 8):
        x = audio * gain
        assert np.any(np.abs(x) > 32767)   # it is clipped (x8: about 5% of the samples)
        texts = [u.text for u in transcribe(PocketsphinxRecognizer(), np.clip(x, -32768, 32767).astype(np.int16))]
        for text in texts:
            assert text == "open the gripper" or not is_command(text) or is_stop(text), (voice, gain, texts)


def test_robot_voice_is_ignored_while_speaking(recognizer, tmp_path):
    audio = spoken("open the gripper", tmp_path)
    stream = SpeechStream(recognizer)
    stream.set_speaking(True)
    heard = [u for i in range(0, len(audio), 480) for u in stream.feed(audio[i:i + 480])]
    assert heard == [] and stream.flush() == []
    stream.set_speaking(False)      # the same words from a person are heard
    heard = [u for i in range(0, len(audio), 480) for u in stream.feed(audio[i:i + 480])] + stream.flush()
    assert [u.text for u in heard] == ["open the gripper"]
    assert heard[0].latency >= 0


def test_unknown_backend_and_missing_whisper_checkpoint():
    with pytest.raises(KobaError):
        make_recognizer("kaldi")
    with pytest.raises(KobaError, match="checkpoint"):
        make_recognizer("whisper", checkpoint="/no/such/model.pt")
    with pytest.raises(KobaError, match="no whisper checkpoint given"):  # not "not found: ." (Path("") is ".")
        make_recognizer("whisper", checkpoint="")


def test_whisper_plumbing_with_a_tiny_random_model(tmp_path):
    """No whisper weights exist here: a randomly initialised 1-layer model checks load → mel → decode only."""
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("whisper")
    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                                         n_audio_layer=1, n_vocab=51865, n_text_ctx=448, n_text_state=16,
                                         n_text_head=2, n_text_layer=1)
    path = tmp_path / "tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": whisper.model.Whisper(dims).state_dict()}, path)
    recognizer = make_recognizer("whisper", checkpoint=str(path))
    hyp = recognizer.recognize(np.zeros(RATE, dtype=np.int16) + 1)
    assert hyp.backend == "whisper" and isinstance(hyp.text, str) and 0.0 <= hyp.confidence <= 1.0
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KobaError, match="not a whisper checkpoint"):
        make_recognizer("whisper", checkpoint=str(tmp_path / "junk.pt"))


def test_general_second_pass_only_for_out_of_domain_speech(tmp_path):
    """In-domain commands are never decoded twice; plain English is, and comes out as English words."""
    recognizer = PocketsphinxRecognizer()   # fresh: the live CMN then starts from the same state every run
    assert [u.text for u in transcribe(recognizer, spoken("move left five centimeters", tmp_path))] == \
        ["move left five centimeters"]
    assert recognizer.second_passes == 0
    heard = transcribe(recognizer, spoken("how are you doing", tmp_path))
    assert recognizer.second_passes == 1 and heard
    assert set(heard[0].text.split()) - set(recognizer.domain.vocabulary)   # words only the general model knows
    assert recognizer.in_domain("up ten centimeters") and recognizer.in_domain("put the red cup in the top left box")
    assert not recognizer.in_domain("who left find the two leaders") and not recognizer.in_domain("")


def test_bad_fallback_and_lm_options(tmp_path):
    from koba_ros.speech.domain_lm import build_domain_lm

    with pytest.raises(KobaError, match="fallback must be one of"):
        PocketsphinxRecognizer(fallback="sometimes")
    sentences = ["go home", "stop", "open the gripper"]
    a = build_domain_lm(lambda w: True, sentences, tmp_path, discount_mass=0.5)
    b = build_domain_lm(lambda w: True, sentences, tmp_path, discount_mass=0.01)
    assert a.arpa_path != b.arpa_path and a.arpa_path.read_text() != b.arpa_path.read_text()


@pytest.mark.parametrize("samples", [0, 1, 479])
def test_koba_asr_refuses_a_file_with_no_audio_in_one_line(tmp_path, capsys, samples):
    import soundfile

    from koba_ros.cli import main

    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(samples, dtype=np.int16), 16000)
    assert main(["asr", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no audio to recognise" in captured.err and len(captured.err.splitlines()) == 1


def test_nonsense_recogniser_and_endpointer_settings_are_refused():
    from koba_ros.speech.vad import Endpointer

    for value in (float("nan"), -0.1, 1.5):
        with pytest.raises(KobaError, match="fallback_confidence"):
            PocketsphinxRecognizer(fallback_confidence=value)
    for value in (-500, 0, 29, float("nan")):
        with pytest.raises(KobaError, match="hangover_ms"):
            Endpointer(hangover_ms=value)
