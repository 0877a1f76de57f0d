"""The whole face pipeline on real photos: FaceMesh landmarks -> expression -> feedback, and bad input."""
import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.face import samples
from koba_ros.face.frames import image_msg_to_rgb, read_image, read_video, rgb_to_image_fields
from koba_ros.face.pipeline import FaceConfig, FacePipeline, read_still


def test_smiling_astronaut_is_positive_feedback():
    result, events = read_still(samples.astronaut())
    assert len(result.faces) == 1
    assert result.expression.label == "positive"
    assert [e.value for e in events] == [1]


def test_grace_hopper_at_rest_is_neutral_with_no_feedback():
    result, events = read_still(samples.grace_hopper())
    assert len(result.faces) == 1 and result.expression.label == "neutral"
    assert events == []


def test_no_face_gives_zero_faces_and_zero_feedback():
    result, events = read_still(samples.no_face())
    assert result.faces == [] and result.skipped == "no face" and events == []


def test_very_dark_frame_is_called_dark_and_gives_nothing():
    dark = (samples.on_canvas(samples.astronaut()) * 0.03).astype(np.uint8)
    result, events = read_still(dark)
    assert events == [] and result.expression is None and result.skipped == "too dark"


def test_face_cut_by_the_frame_edge_is_not_read():
    cut = samples.on_canvas(samples.astronaut(), y=-100)
    result, events = read_still(cut)
    assert events == [] and result.expression is None
    assert result.skipped == "no face" or result.skipped.startswith("face at the edge")


def test_the_largest_face_is_read():
    # Grace Hopper on the left, the smiling astronaut on the right with a smaller face: Grace (neutral) is read.
    # (FaceMesh's short-range detector needs faces of about a fifth of the frame, hence the tight layout.)
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[80:, 240:] = samples.on_canvas(samples.astronaut(), (400, 400))
    frame[:, :240] = samples.on_canvas(samples.grace_hopper(), (240, 480))
    result, events = read_still(frame)
    assert len(result.faces) == 2
    assert result.face is result.faces[0] and result.face.area > result.faces[1].area
    assert result.expression.label == "neutral" and events == []


@pytest.mark.parametrize("frame", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((480, 640, 5), np.uint8),
                                   np.zeros((10, 10, 3), np.uint8)])
def test_empty_or_malformed_frames_are_one_line_errors(frame):
    pipeline = FacePipeline(FaceConfig(calibration_s=0))
    try:
        with pytest.raises(KobaError):
            pipeline.process(frame, 0.0)
        assert pipeline.process(samples.on_canvas(samples.grace_hopper()), 0.1).expression  # still works after
    finally:
        pipeline.close()


def test_stream_gives_one_event_per_smile_stamped_at_its_onset():
    rest, smile = samples.on_canvas(samples.grace_hopper()), samples.on_canvas(samples.astronaut())
    frames = [rest] * 8 + [smile] * 8 + [rest] * 8 + [smile] * 8
    pipeline = FacePipeline(FaceConfig(calibration_s=0))
    try:
        events = [e for i, f in enumerate(frames) for e in pipeline.process(f, i / 10).events]
    finally:
        pipeline.close()
    assert [(e.value, e.cue) for e in events] == [(1, "smile"), (1, "smile")]
    # Stamped at the cut to the smile; FaceMesh's tracker may need a frame or two to re-detect after an abrupt
    # cut between two people, so the onset may trail the cut by up to two frames (never precede it).
    for event, cut in zip(events, (0.8, 2.4), strict=True):
        assert cut - 1e-9 <= event.onset <= cut + 0.2 + 1e-9
        assert event.decided - event.onset >= 0.2 - 1e-9  # min_duration_s


def test_no_feedback_while_calibrating():
    pipeline = FacePipeline(FaceConfig(calibration_s=5.0))
    try:
        smile = samples.on_canvas(samples.astronaut())
        events = [e for i in range(10) for e in pipeline.process(smile, i / 10).events]
        assert events == [] and pipeline.calibrating
    finally:
        pipeline.close()


def test_bad_config_is_rejected():
    with pytest.raises(KobaError):
        FaceConfig(on_threshold=0.1, off_threshold=0.3)
    for bad in (dict(smoothing_s=float("nan")), dict(calibration_s=float("nan")), dict(calibration_s=float("inf")),
                dict(on_threshold=float("nan")), dict(min_visible=float("nan")), dict(min_visible=1.5),
                dict(dark_level=-1.0), dict(max_faces=0), dict(max_faces=-3)):
        with pytest.raises(KobaError) as info:
            FaceConfig(**bad)
        assert "\n" not in str(info.value), bad


def test_a_clock_that_jumps_back_starts_a_new_stream_and_keeps_no_history():
    """A camera, bag or simulation restarted: the time windows would otherwise keep and rescan every frame."""
    rest, smile = samples.on_canvas(samples.grace_hopper()), samples.on_canvas(samples.astronaut())
    pipeline = FacePipeline(FaceConfig(calibration_s=0))
    try:
        for i in range(20):
            pipeline.process(rest, 1000.0 + i / 10)
        for i in range(40):  # the clock restarted at 0
            pipeline.process(rest, i / 10)
        assert len(pipeline.gestures.history) <= 16  # 1.5 s of frames at 10 per second, not all 40 + 20
        events = [e for i in range(8) for e in pipeline.process(smile, 4.0 + i / 10).events]
        assert [e.cue for e in events] == ["smile"] and 4.0 <= events[0].onset <= 4.3
        with pytest.raises(KobaError, match="finite"):
            pipeline.process(rest, float("nan"))
    finally:
        pipeline.close()


# --- frame sources -----------------------------------------------------------------------

def test_corrupt_and_missing_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg" * 20)
    with pytest.raises(KobaError, match="corrupt"):
        read_image(bad)
    with pytest.raises(KobaError, match="no such file"):
        read_image(tmp_path / "missing.png")
    video = tmp_path / "bad.avi"
    video.write_bytes(b"RIFF garbage" * 100)
    with pytest.raises(KobaError):
        list(read_video(video))


def test_image_messages_convert_to_rgb():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    fields = rgb_to_image_fields(rgb)
    assert np.array_equal(image_msg_to_rgb(fields["encoding"], 4, 5, fields["step"], fields["data"]), rgb)
    bgr_padded = np.zeros((4, 16), np.uint8)  # step 16 > 5 * 3: row padding
    bgr_padded[:, :15] = rgb[:, :, ::-1].reshape(4, 15)
    assert np.array_equal(image_msg_to_rgb("bgr8", 4, 5, 16, bgr_padded.tobytes()), rgb)
    mono = image_msg_to_rgb("mono8", 4, 5, 5, rgb[:, :, 0].tobytes())
    assert mono.shape == (4, 5, 3) and np.array_equal(mono[:, :, 2], rgb[:, :, 0])
    with pytest.raises(KobaError, match="encoding"):
        image_msg_to_rgb("yuv422", 4, 5, 10, b"\0" * 40)
    with pytest.raises(KobaError, match="too short"):
        image_msg_to_rgb("rgb8", 4, 5, 15, b"\0" * 10)


def test_a_reset_gesture_detector_hears_a_nod_on_a_new_clock_at_once():
    """reset() (a restarted stream) kept the old clock's refractory time: no nod until the new clock passed it."""
    import math

    from koba_ros.face.feedback import HeadGestureDetector

    def nods(detector, t0):  # a second of nodding at 2 Hz, 30 frames a second
        events = [detector.update(t0 + i / 30, 0.0, 0.2 * math.sin(4 * math.pi * i / 30)) for i in range(30)]
        return [e.cue for e in events if e]

    detector = HeadGestureDetector()
    assert nods(detector, 3600.0) == ["nod"]
    detector.reset()
    assert nods(detector, 0.0) == ["nod"]
