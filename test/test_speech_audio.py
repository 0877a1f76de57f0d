"""Audio in and the endpointer: every common format lands as 16 kHz mono int16; bad input is one KobaError."""
import numpy as np
import pytest
import soundfile

from koba_ros.errors import KobaError
from koba_ros.speech.audio import RATE, Microphone, interleaved_to_mono_int16, load_audio, to_mono_int16
from koba_ros.speech.vad import Endpointer


def tone(rate, seconds=0.5, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def test_8khz_stereo_float_wav_becomes_16k_mono_int16(tmp_path):
    path = tmp_path / "stereo8k.wav"
    left = tone(8000)
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 8000, subtype="FLOAT")
    x = load_audio(path)
    assert x.dtype == np.int16 and x.ndim == 1
    assert abs(len(x) - RATE * 0.5) <= 2
    # Averaging the silent channel halves the amplitude: 0.5 * 0.5 of full scale.
    assert 0.2 * 32768 < np.abs(x).max() < 0.3 * 32768


def test_unsigned_8bit_and_clipped_audio(tmp_path):
    path = tmp_path / "u8.wav"
    soundfile.write(path, np.clip(tone(16000) * 3, -1, 1), 16000, subtype="PCM_U8")
    x = load_audio(path)
    assert np.abs(x).max() > 30000 and np.abs(np.mean(x)) < 1000   # clipped, but centred


def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file")
    for path in (bad, tmp_path / "missing.wav"):
        with pytest.raises(KobaError) as err:
            load_audio(path)
        assert "\n" not in str(err.value)
    odd = tmp_path / "odd.raw"
    odd.write_bytes(b"\x00\x01\x02")
    with pytest.raises(KobaError):
        load_audio(odd)


def test_nan_audio_is_rejected():
    with pytest.raises(KobaError):
        to_mono_int16(np.array([0.0, np.nan]), RATE)


def test_missing_microphone_is_one_line_error():
    mic = Microphone(lambda block: None, device="no such microphone 12345")
    with pytest.raises(KobaError) as err:
        mic.start()
    assert str(err.value).startswith("no microphone available") and "\n" not in str(err.value)


def test_endpointer_ignores_silence_and_cuts_spoken_audio(tmp_path):
    from koba_ros.speech.tts import Speaker

    ep = Endpointer()
    assert ep.push(np.zeros(RATE, dtype=np.int16)) == []          # silence never opens an utterance
    Speaker(play=False).synthesize("move left five centimeters", tmp_path / "s.wav")
    speech = load_audio(tmp_path / "s.wav")
    loud = np.flatnonzero(np.abs(speech) > 500)
    events = ep.push(np.concatenate([speech, np.zeros(RATE, dtype=np.int16)]))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("end") == 1 and kinds[-1] == "end"
    last_sound = 1.0 + loud[-1] / RATE                              # stream time, after the first second
    assert abs(events[-1].speech_end - last_sound) < 0.2


def test_audio_chunk_interleaved_stereo_48k_to_16k_mono():
    """An AudioChunk's data: frames interleaved by channel; the silent right channel halves the amplitude."""
    left = np.round(tone(48000) * 32767).astype(np.int16)
    interleaved = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    x = interleaved_to_mono_int16(interleaved.tolist(), 48000, 2)
    assert x.dtype == np.int16 and abs(len(x) - RATE * 0.5) <= 2
    assert 0.2 * 32768 < np.abs(x).max() < 0.3 * 32768
    mono = interleaved_to_mono_int16(left, 48000, 1)
    assert abs(np.abs(mono).max() - 2 * np.abs(x).max()) < 0.02 * 32768


@pytest.mark.parametrize("data, rate, channels, message", [
    ([1, 2, 3], 16000, 2, "whole number of 2-channel frames"),
    ([1, 2], 16000, 0, "at least one channel"),
    ([1, 2], 0, 1, "sample rate 0 Hz is not audio"),
    ([1, 2], 1, 1, "sample rate 1 Hz is not audio this can use .4000 to 384000 Hz."),
    ([1, 2], 10 ** 7, 1, "sample rate 10000000 Hz is not audio"),
])
def test_bad_audio_chunk_is_one_line_error(data, rate, channels, message):
    with pytest.raises(KobaError, match=message):
        interleaved_to_mono_int16(data, rate, channels)


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_a_streams_chunks_are_resampled_as_one_signal(rate):
    """Each chunk resampled alone gained a zero-padded edge (a click) and a rounded-up sample per chunk (44.1 kHz in
    1024-sample chunks: 16021 samples a second, not 16000)."""
    from scipy.signal import resample_poly

    from koba_ros.speech.audio import StreamResampler

    rng = np.random.default_rng(rate)
    x = 0.5 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate) + 0.05 * rng.standard_normal(rate)
    resampler, out, i = StreamResampler(rate), [], 0
    while i < len(x):  # chunks of any length, as a topic or a sound card delivers them
        n = int(rng.integers(1, 2000))
        out.append(resampler.feed(x[i:i + n]))
        i += n
    y, whole = np.concatenate(out), resample_poly(x, resampler.up, resampler.down)
    assert len(y) == (len(x) - len(resampler.pending)) * resampler.up // resampler.down
    late = resampler.delay * resampler.up // resampler.down  # a fixed delay: 27 ms at most for these rates
    assert late <= 0.03 * RATE
    np.testing.assert_allclose(y[late:], whole[:len(y) - late], atol=1e-9)


def test_audio_chunks_of_one_stream_go_through_its_resampler_and_a_new_rate_starts_anew():
    from koba_ros.speech.audio import AudioStream

    stream = AudioStream()
    chunk = (8000 * np.sin(np.arange(2048) / 7)).astype(np.int16)
    out = [interleaved_to_mono_int16(chunk, 44100, 2, stream) for _ in range(40)]
    assert sum(map(len, out)) == (40 * 1024 - len(stream.resampler.pending)) * 160 // 441  # whole periods only
    first = stream.resampler
    assert len(interleaved_to_mono_int16(chunk, 16000, 1, stream)) == 2048 and stream.resampler is not first


@pytest.mark.parametrize("rate", [44099, 48001, 7919])
def test_an_odd_rate_is_resampled_at_the_nearest_short_period_ratio(rate):
    """16000/44099 is already in lowest terms: a period of one second, so a second's delay and a 900k-tap filter.
    The nearest ratio with a period under 50 ms is used instead."""
    from koba_ros.speech.audio import MAX_PERIOD_S, StreamResampler

    resampler = StreamResampler(rate)
    assert resampler.down <= MAX_PERIOD_S * rate and resampler.delay <= 2 * MAX_PERIOD_S * rate
    assert abs(resampler.up / resampler.down * rate / RATE - 1) < 1e-4
    x = np.sin(np.arange(2 * rate) / 10.0)
    out = np.concatenate([resampler.feed(x[i:i + 1024]) for i in range(0, len(x), 1024)])
    assert abs(len(out) - 2 * RATE) < 0.06 * RATE  # all of it but the last partial period
