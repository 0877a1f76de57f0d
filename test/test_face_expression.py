"""Features -> expression -> events on real FaceMesh landmark sets (the astronaut's), edited geometrically.

No installed package ships a frowning face, so frowns and a neutral version of the smiling astronaut
are her real landmarks with the mouth corners lowered, the mouth narrowed and the brows lowered and
gathered (koba_ros.face.samples). Nods and shakes turn the same landmarks in 3-D.
"""
import numpy as np
import pytest

from koba_ros.face import samples
from koba_ros.face.expression import POPULATION_NEUTRAL, NeutralCalibrator, classify
from koba_ros.face.features import extract_features
from koba_ros.face.feedback import ExpressionDebouncer, HeadGestureDetector


@pytest.fixture(scope="module")
def smile_points():
    from koba_ros.face.landmarks import LandmarkDetector

    detector = LandmarkDetector(video=False)
    try:
        faces = detector.detect(samples.astronaut())
    finally:
        detector.close()
    assert len(faces) == 1
    return faces[0].points


def label(points, neutral=POPULATION_NEUTRAL):
    return classify(extract_features(points), neutral).label


def test_real_smile_landmarks_are_positive(smile_points):
    e = classify(extract_features(smile_points))
    assert e.label == "positive" and e.value == 1 and e.confidence > 0.8


def test_mouth_edits_change_the_expression(smile_points):
    neutral = samples.edit_landmarks(smile_points, samples.NEUTRAL)
    frown = samples.edit_landmarks(smile_points, samples.FROWN)
    assert extract_features(neutral).mouth_corner_lift == pytest.approx(0.0, abs=0.01)
    assert label(neutral) == "neutral"
    assert label(frown) == "negative"
    assert classify(extract_features(frown)).value == -1


def test_brow_frown_needs_the_persons_own_neutral(smile_points):
    rest = samples.edit_landmarks(smile_points, samples.NEUTRAL)
    brows = samples.edit_landmarks(rest, samples.BROWS_ONLY_FROWN)
    assert label(brows) == "neutral"  # brow height varies between people: no brow cue without calibration
    calibrator = NeutralCalibrator(seconds=1.0, min_frames=5)
    rng = np.random.default_rng(0)
    for i in range(20):  # a second of rest face with a little landmark jitter
        calibrator.add(i * 0.066, extract_features(rest + rng.normal(0, 0.3, rest.shape)))
    assert calibrator.done and calibrator.neutral.calibrated
    assert label(brows, calibrator.neutral) == "negative"
    assert label(rest, calibrator.neutral) == "neutral"


def test_calibration_ignores_smiling_frames(smile_points):
    calibrator = NeutralCalibrator(seconds=0.5, min_frames=3)
    for i in range(30):
        calibrator.add(i * 0.066, extract_features(smile_points))
    assert not calibrator.done  # a smile is not a rest face
    assert label(smile_points, calibrator.neutral) == "positive"


def test_features_ignore_size_position_and_roll(smile_points):
    base = extract_features(smile_points)
    angle = 0.3
    c, s = np.cos(angle), np.sin(angle)
    moved = smile_points.copy()
    moved[:, :2] = (smile_points[:, :2] - 200) @ np.array([[c, -s], [s, c]]).T * 0.6 + 50
    moved[:, 2] *= 0.6
    f = extract_features(moved)
    for name in ("mouth_corner_lift", "mouth_width", "brow_raise", "eye_aperture"):
        assert getattr(f, name) == pytest.approx(getattr(base, name), abs=1e-6), name
    assert f.roll == pytest.approx(base.roll + angle, abs=1e-6)


def test_bad_landmarks_are_rejected():
    with pytest.raises(ValueError):
        extract_features(np.zeros((10, 3)))
    with pytest.raises(ValueError):
        extract_features(np.zeros((468, 3)))  # all points coincide


# --- events ------------------------------------------------------------------------------

def run_debouncer(scores, fps=15.0, **kw):
    d = ExpressionDebouncer(**kw)
    events = []
    for i, s in enumerate(scores):
        e = d.update(i / fps, s)
        if e:
            events.append(e)
    return events


def test_one_smile_is_one_event_stamped_at_onset():
    scores = [0.0] * 15 + [0.9] * 30 + [0.0] * 15
    events = run_debouncer(scores)
    assert len(events) == 1
    assert events[0].value == 1 and events[0].cue == "smile"
    assert events[0].onset == pytest.approx(15 / 15.0)
    assert events[0].decided > events[0].onset


def test_flicker_shorter_than_min_duration_gives_nothing():
    assert run_debouncer([0.0] * 10 + [1.0, 1.0] + [0.0] * 10) == []


def test_expression_rearms_only_after_rest():
    wobble = [0.9, 0.5, 0.9, 0.6, 0.95] * 6  # stays above off: still the same smile
    assert len(run_debouncer([0.0] * 5 + wobble + [0.0] * 5)) == 1
    two = [0.0] * 5 + [0.9] * 10 + [0.0] * 10 + [-0.9] * 10 + [0.0] * 5
    assert [e.value for e in run_debouncer(two)] == [1, -1]


def test_losing_the_face_ends_the_expression():
    scores = [0.0] * 5 + [0.9] * 2 + [None] * 15 + [0.9] * 10
    events = run_debouncer(scores)
    assert len(events) == 1 and events[0].onset == pytest.approx(22 / 15.0)  # onset after the gap, not before


def gesture_events(points, axis, swings, amplitude=0.25, fps=15.0, period_s=0.5):
    detector = HeadGestureDetector()
    events = []
    n = int(swings * period_s / 2 * fps) + 10
    for i in range(n):
        t = i / fps
        angle = amplitude * np.sin(2 * np.pi * t / period_s) if t < swings * period_s / 2 else 0.0
        f = extract_features(samples.rotate_landmarks(points, **{axis: angle}))
        e = detector.update(t, f.yaw, f.pitch)
        if e:
            events.append(e)
    return events


def test_nod_is_positive_and_shake_is_negative(smile_points):
    nods = gesture_events(smile_points, "pitch", swings=4)
    shakes = gesture_events(smile_points, "yaw", swings=4)
    assert [(e.value, e.cue) for e in nods] == [(1, "nod")]
    assert [(e.value, e.cue) for e in shakes] == [(-1, "shake")]
    assert nods[0].onset < 0.3  # stamped where the head started moving


def test_one_look_away_and_back_is_no_shake(smile_points):
    assert gesture_events(smile_points, "yaw", swings=1) == []  # 0 -> turned -> 0: two swings
    assert gesture_events(smile_points, "yaw", swings=4, amplitude=0.03) == []  # small jitter


def test_a_rest_face_that_never_reads_neutral_is_taken_as_rest_after_a_while(smile_points):
    """Found by a review (session 26): mouth corners that rest low read as a frown against the population prior, so
    the calibration waited for a neutral stretch forever and the node gave no feedback at all, without a word."""
    low_rest = samples.edit_landmarks(smile_points, samples.FROWN)
    assert classify(extract_features(low_rest)).label == "negative"
    calibrator = NeutralCalibrator(seconds=2.0, min_frames=10)
    for i in range(int(7.9 / 0.066)):
        calibrator.add(i * 0.066, extract_features(low_rest))
    assert not calibrator.done                       # still waiting for a neutral stretch before give_up_s (8 s)
    for i in range(int(7.9 / 0.066), int(8.5 / 0.066)):
        calibrator.add(i * 0.066, extract_features(low_rest))
    assert calibrator.done and calibrator.assumed
    assert classify(extract_features(low_rest), calibrator.neutral).label == "neutral"
    assert classify(extract_features(smile_points), calibrator.neutral).label == "positive"
    calibrator.reset()
    assert not calibrator.done and not calibrator.assumed


def test_the_fallback_waits_for_a_neutral_stretch_under_way(smile_points):
    """Found by a review: a face that turned neutral at 7.3 s was taken as rest from its last 2 s (mostly frown) at
    8 s, instead of calibrating on the neutral stretch at 9.3 s."""
    rest = samples.edit_landmarks(smile_points, samples.NEUTRAL)
    low = samples.edit_landmarks(smile_points, samples.FROWN)
    calibrator = NeutralCalibrator(seconds=2.0, min_frames=10)
    t = 0.0
    while not calibrator.done and t < 12:
        calibrator.add(t, extract_features(low if t < 7.3 else rest))
        t += 0.066
    assert calibrator.done and not calibrator.assumed and t > 9.2
    assert classify(extract_features(rest), calibrator.neutral).label == "neutral"
