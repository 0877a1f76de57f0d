"""Session 26 review fixes in face feedback: the debug picture skips a face with non-finite landmarks (and a fault
drawing it no longer ends face_feedback_node), a smile straight into a frown is two events at any frame rate, and
check_frame refuses non-numeric or ragged frames in one line and scales uint16 instead of clipping it to white."""
import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.face.annotate import annotate
from koba_ros.face.feedback import ExpressionDebouncer
from koba_ros.face.landmarks import Face, check_frame
from koba_ros.face.pipeline import FaceConfig, FacePipeline
from test.test_rl_face_review24 import _faces  # synthetic neutral and smiling landmarks

FRAME = np.full((480, 640, 3), 128, np.uint8)


class _Detector:
    faces: list = []

    def detect(self, rgb):
        return list(self.faces)

    def close(self):
        pass


def _pipeline(faces) -> FacePipeline:
    pipeline = FacePipeline(FaceConfig(calibration_s=0.0, gestures=False))
    pipeline.detector.close()
    pipeline.detector = _Detector()
    pipeline.detector.faces = faces
    return pipeline


def _bad_faces():
    neutral, smile = _faces()
    nan, inf, far = neutral.copy(), neutral.copy(), smile.copy()
    nan[61] = np.nan
    inf[5, 0] = np.inf
    far[7] = (1e12, -1e12, 0)  # finite, but past what cv2 takes (int32)
    return [Face(nan, (640, 480)), Face(inf, (640, 480)), Face(far, (640, 480))]


# --- 1. the debug picture --------------------------------------------------------------------------------------
def test_annotate_skips_faces_with_non_finite_landmarks_and_draws_far_ones():
    """Was: ValueError (NaN) / OverflowError (inf) / cv2.error (1e12) from int() or cv2 on the face's box."""
    faces = _bad_faces()
    result = _pipeline(faces).process(FRAME, 0.0)
    assert result.face is faces[2] and result.expression  # the far one is read (its dots are drawn too) ...
    assert len(result.faces) == 3  # ... and the non-finite ones are kept in result.faces, though not read
    picture = annotate(FRAME, result, "status")
    assert picture.shape == FRAME.shape and picture.dtype == np.uint8 and (picture != FRAME).any()
    only_bad = _pipeline(_bad_faces()[:2]).process(FRAME, 0.0)
    assert only_bad.skipped == "bad landmarks"
    assert annotate(FRAME, only_bad).shape == FRAME.shape


@pytest.mark.ros
def test_a_fault_drawing_the_debug_image_drops_only_that_image(ros_context):
    """Was: publish_debug ran outside on_frame's try, so a bad face ended face_feedback_node (and a composed graph)
    as soon as someone viewed /face/debug_image."""
    from rclpy.parameter import Parameter
    from rclpy.time import Time

    from koba_ros.nodes.face_feedback_node import FaceFeedbackNode

    class _Publisher:
        def __init__(self):
            self.sent = []

        def publish(self, msg):
            self.sent.append(msg)

        def get_subscription_count(self):
            return 1  # someone views the debug image

    node = FaceFeedbackNode(context=ros_context, parameter_overrides=[Parameter("source", value="topic")])
    try:
        node.pipeline = _pipeline(_bad_faces()[:2])
        node.feedback_pub, node.debug_pub = _Publisher(), _Publisher()
        node.on_frame(FRAME, Time(seconds=1), "cam")  # the real annotate: skips the bad faces
        assert len(node.debug_pub.sent) == 1

        def broken(*args):
            raise RuntimeError("drawing failed")

        node.publish_debug = broken  # any other fault in drawing: logged, the node goes on
        node.on_frame(FRAME, Time(seconds=2), "cam")
        assert len(node.debug_pub.sent) == 1 and node.pipeline is not None
    finally:
        node.destroy_node()


# --- 2. a smile straight into a frown ---------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [5, 8, 10, 12, 15, 20, 25, 30, 60])
def test_a_smile_straight_into_a_frown_is_two_events_at_any_frame_rate(fps):
    """Was: the debouncer re-armed only when the smoothed score passed through |s| < off; at 5, 10 and 20 fps it
    jumped from smile to frown between two frames and the frown was lost."""
    debouncer = ExpressionDebouncer()
    scores = [0.0] * fps + [1.0] * fps + [-1.0] * 2 * fps + [1.0] * fps
    events = [e for e in (debouncer.update(i / fps, s) for i, s in enumerate(scores)) if e]
    assert [(round(e.onset, 2), e.value, e.cue) for e in events] == [(1.0, 1, "smile"), (2.0, -1, "frown"),
                                                                      (4.0, 1, "smile")]


def test_a_held_expression_is_still_one_event():
    debouncer = ExpressionDebouncer()
    scores = [0.0] * 5 + [0.9] * 60 + [0.5] * 30 + [0.9] * 30  # one long smile that wavers above off
    events = [e for e in (debouncer.update(i / 15, s) for i, s in enumerate(scores)) if e]
    assert [e.value for e in events] == [1]


# --- 6. check_frame ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frame", [np.full((64, 64, 3), "a"), np.full((64, 64, 3), "a", object),
                                   np.ones((64, 64, 3), complex), [[1, 2], [3]], [[[1, 2, 3]] * 64, [[1, 2]] * 64]],
                         ids=["str", "object", "complex", "ragged", "ragged3d"])
def test_check_frame_refuses_non_numeric_and_ragged_frames_in_one_line(frame):
    """Was: TypeError / UFuncTypeError / ValueError (ragged), and complex silently lost its imaginary part."""
    with pytest.raises(KobaError) as info:
        check_frame(frame)
    assert "\n" not in str(info.value) and len(str(info.value)) < 120


def test_check_frame_scales_uint16_instead_of_clipping_it_to_white():
    """Was: np.clip(.., 0, 255) made every uint16 pixel above 255 white. uint16 is full range: >> 8."""
    values = [40000, 65535, 255, 256, 1000, 32768]
    frame = np.zeros((64, 64, 3), np.uint16)
    frame[0, :len(values)] = np.array(values)[:, None]
    out = check_frame(frame)
    assert out.dtype == np.uint8
    assert out[0, :len(values), 0].tolist() == [156, 255, 0, 1, 3, 128]
    assert check_frame(frame.astype(">u2")).tolist() == out.tolist()   # a big-endian TIFF's, the same values
    assert check_frame(FRAME).tolist() == FRAME.tolist()  # uint8 untouched

