"""Session 22 review fix: one frame of non-finite landmarks (NaN or inf) must not silence face feedback. Was: its
NaN score made the debouncer's smoothed score NaN for good (no smile or frown ever fired again), and a NaN sample
during calibration made the person's neutral face NaN."""
import math

import numpy as np

from koba_ros.face.expression import NeutralCalibrator, classify
from koba_ros.face.features import extract_features
from koba_ros.face.feedback import ExpressionDebouncer, HeadGestureDetector
from koba_ros.face.landmarks import Face
from koba_ros.face.pipeline import FaceConfig, FacePipeline


def _faces():
    """Synthetic (468, 3) landmarks: a neutral face and the same face smiling (corners up, mouth wider)."""
    rng = np.random.default_rng(0)
    neutral = rng.uniform(100, 300, (468, 3))
    neutral[33], neutral[263] = (150, 200, 0), (250, 200, 0)                  # outer eye corners
    neutral[61], neutral[291], neutral[13], neutral[14] = (170.5, 300, 0), (229.5, 300, 0), (200, 299, 0), (200, 301, 0)
    smile = neutral.copy()
    smile[61], smile[291] = (165, 290, 0), (235, 290, 0)
    bad = neutral.copy()
    bad[61] = np.nan
    return neutral, smile, bad


def _smile_events(scores) -> list[tuple[float, int]]:
    debouncer = ExpressionDebouncer()
    events = [debouncer.update(i / 15, s) for i, s in enumerate(scores)]
    return [(round(e.onset, 2), e.value) for e in events if e]


def test_a_nan_score_is_a_frame_without_a_face_for_the_debouncer():
    scores = [0.0] * 10 + [0.9] * 20 + [0.0] * 10
    expected = _smile_events(scores)
    assert expected == [(0.67, 1)]
    for bad in (math.nan, math.inf):
        assert _smile_events(scores[:5] + [bad] + scores[6:]) == expected


def test_a_nan_head_pose_is_ignored_by_the_gesture_detector():
    detector = HeadGestureDetector()
    assert detector.update(0.0, math.nan, 0.0) is None and detector.update(0.1, 0.0, math.inf) is None
    assert len(detector.history) == 0


def test_calibration_takes_no_nan_sample():
    neutral, smile, bad = _faces()
    calibrator = NeutralCalibrator(seconds=0.5, min_frames=3)
    for i in range(10):
        calibrator.add(i / 10, extract_features(bad if i == 2 else neutral))
    assert calibrator.neutral.calibrated
    assert all(math.isfinite(v) for v in (calibrator.neutral.mouth_corner_lift, calibrator.neutral.mouth_width))
    assert classify(extract_features(smile), calibrator.neutral).label == "positive"


class _Detector:
    """Stands in for FaceMesh: returns the landmarks it is told to."""
    points = None

    def detect(self, rgb):
        return [Face(self.points, (rgb.shape[1], rgb.shape[0]))]

    def close(self):
        pass


def test_the_pipeline_skips_a_frame_of_bad_landmarks_and_still_hears_the_smile():
    neutral, smile, bad = _faces()
    pipeline = FacePipeline(FaceConfig(calibration_s=0.0, gestures=False))
    pipeline.detector.close()
    pipeline.detector = _Detector()
    frame = np.full((480, 640, 3), 128, np.uint8)
    events, skipped = [], []
    for i in range(40):
        pipeline.detector.points = bad if i == 5 else smile if 10 <= i < 30 else neutral
        result = pipeline.process(frame, i / 15)
        events += [(round(e.onset, 2), e.value) for e in result.events]
        skipped.append(result.skipped)
    assert skipped[5] == "bad landmarks" and skipped.count("") == 39
    assert events == [(0.67, 1)]
    bad_inf = neutral.copy()
    bad_inf[0, 2] = np.inf
    pipeline.detector.points = bad_inf
    result = pipeline.read(frame, 10.0)
    assert result.skipped == "bad landmarks" and result.features is None and result.expression is None
