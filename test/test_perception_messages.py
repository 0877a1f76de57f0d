"""Camera and object message conversion (sim_node, realsense_node, perception_node), tested without a camera."""
import numpy as np
import pytest
from builtin_interfaces.msg import Time

from koba_ros.errors import KobaError
from koba_ros.perception.messages import (
    camera_info_msg,
    depth_to_msg,
    msg_to_depth,
    msg_to_K,
    msg_to_objects,
    msg_to_rgb,
    objects_to_msg,
    rgb_to_msg,
)
from koba_ros.perception.objects import PerceivedObject
from koba_ros.perception.realsense import Intrinsics, frames_to_arrays

STAMP = Time(sec=5, nanosec=7)


def test_rgb_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    msg = rgb_to_msg(rgb, STAMP, "cam")
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 18, "cam")
    assert np.array_equal(msg_to_rgb(msg), rgb)
    msg.encoding = "bgr8"
    assert np.array_equal(msg_to_rgb(msg), rgb[:, :, ::-1])


@pytest.mark.parametrize("encoding, tolerance", [("32FC1", 1e-6), ("16UC1", 0.0005)])
def test_depth_round_trip_and_missing_readings(encoding, tolerance):
    depth = np.array([[0.5, 0.75], [np.nan, 1.2345]], dtype=np.float32)
    back = msg_to_depth(depth_to_msg(depth, STAMP, "cam", encoding))
    assert np.isnan(back[1, 0])
    assert np.allclose(back[~np.isnan(back)], depth[~np.isnan(depth)], atol=tolerance)


def test_bad_encodings_are_errors():
    with pytest.raises(KobaError, match="encoding"):
        depth_to_msg(np.zeros((2, 2)), STAMP, "cam", "8UC1")
    msg = rgb_to_msg(np.zeros((2, 2, 3), np.uint8), STAMP, "cam")
    with pytest.raises(KobaError, match="depth image encoding"):
        msg_to_depth(msg)


def test_camera_info():
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    msg = camera_info_msg(K, 640, 480, STAMP, "cam")
    assert np.array_equal(msg_to_K(msg), K) and msg.p[3] == 0 and msg.distortion_model == "plumb_bob"
    msg.k = [0.0] * 9
    with pytest.raises(KobaError, match="no intrinsics"):
        msg_to_K(msg)


def test_objects_round_trip():
    obj = PerceivedObject(id=3, bbox=(1, 2, 3, 4), position=(0.5, 0.1, 0.03), size=(0.04, 0.05, 0.06), box="top_left",
                          mean_rgb=(0.8, 0.1, 0.1), attributes=["color:red"], features=np.arange(4.0), yaw=0.25,
                          width=0.034)
    (back,) = msg_to_objects(objects_to_msg([obj], STAMP))
    assert back.width == pytest.approx(0.034)
    assert back.id == 3 and back.bbox == (1, 2, 3, 4) and back.box == "top_left" and back.attributes == ["color:red"]
    assert np.allclose(back.position, obj.position) and np.allclose(back.size, obj.size)
    assert back.yaw == pytest.approx(0.25) and np.allclose(back.mean_rgb, obj.mean_rgb, atol=1e-3)
    assert np.allclose(back.features, obj.features)
    assert back.crop is None                                       # no crop sent, none received


def test_crop_round_trip_and_a_wrong_sized_crop_stays_visible():
    crop = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    obj = PerceivedObject(id=1, bbox=(1, 2, 3, 4), position=(0.5, 0.1, 0.03), size=(0.04, 0.05, 0.06), box="top_left",
                          mean_rgb=(0.8, 0.1, 0.1), crop=crop)
    msg = objects_to_msg([obj], STAMP)
    assert len(msg.objects[0].crop) == 5 * 48 * 48
    (back,) = msg_to_objects(msg)
    assert back.crop.dtype == np.uint8 and np.array_equal(back.crop, crop)
    msg.objects[0].crop = bytes(100)                                # a foreign publisher's crop of another size
    (bad,) = msg_to_objects(msg)
    assert bad.crop.shape == (100,)                                # kept, so the crop model names the object


def test_realsense_frames_to_arrays():
    """What realsense_node does with a D4xx frame pair: z16 units * depth scale, 0 = no reading."""
    intr = Intrinsics(4, 2, 610.0, 611.0, 2.1, 0.9)
    color = np.full((2, 4, 3), 9, np.uint8)
    z16 = np.array([[1000, 0, 250, 65535], [1, 2, 3, 4]], np.uint16)
    rgb, depth, K = frames_to_arrays(color, z16, 0.001, intr)
    assert rgb is color and K[0, 0] == 610.0 and K[1, 2] == 0.9
    assert depth[0, 0] == pytest.approx(1.0) and np.isnan(depth[0, 1]) and depth[0, 3] == pytest.approx(65.535)
    # And on to the same messages sim_node publishes.
    assert np.allclose(msg_to_depth(depth_to_msg(depth, STAMP, "cam", "16UC1"))[0, 2], 0.25)
    with pytest.raises(KobaError, match="not aligned"):
        frames_to_arrays(color, z16[:1], 0.001, intr)
    with pytest.raises(KobaError, match="another resolution"):
        frames_to_arrays(color, z16, 0.001, Intrinsics(8, 2, 1, 1, 1, 1))


def test_realsense_camera_missing_is_a_clear_error():
    from koba_ros.perception.realsense import RealSenseCamera

    with pytest.raises(KobaError, match="RealSense|pyrealsense2"):
        RealSenseCamera()


def red_cube(**changes):
    fields = dict(id=3, bbox=(1, 2, 3, 4), position=(0.5, 0.1, 0.03), size=(0.04, 0.05, 0.06), box="top_left",
                  mean_rgb=(0.8, 0.1, 0.1), features=np.arange(4.0))
    return PerceivedObject(**{**fields, **changes})


def set_attribute(d, key, value):
    d.attributes = [a for a in d.attributes if not a.startswith(key + ":")] + [f"{key}:{value}"]


@pytest.mark.parametrize("spoil, message", [
    (lambda d: set_attribute(d, "mean_rgb", "abc"), "mean_rgb must be 3 finite numbers, got 'abc'"),
    (lambda d: set_attribute(d, "mean_rgb", "0.5,0.5"), "mean_rgb must be 3 finite numbers"),
    (lambda d: set_attribute(d, "mean_rgb", "nan,0.1,0.1"), "mean_rgb must be 3 finite numbers"),
    (lambda d: set_attribute(d, "yaw", "inf"), "yaw must be 1 finite number"),
    (lambda d: set_attribute(d, "width", ""), "width must be 1 finite number"),
    (lambda d: setattr(d.size, "z", float("nan")), "size must be 3 finite numbers"),
    (lambda d: setattr(d.position, "x", float("-inf")), "position must be 3 finite numbers"),
    (lambda d: setattr(d, "score", float("nan")), "score must be 1 finite number"),
])
def test_a_malformed_or_non_finite_detected_object_is_one_line_naming_it(spoil, message):
    msg = objects_to_msg([red_cube(id=7), red_cube()], STAMP)
    msg_to_objects(msg)                                            # the unspoilt message converts
    spoil(msg.objects[1])
    with pytest.raises(KobaError, match=f"DetectedObject 3: {message}") as err:
        msg_to_objects(msg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("changes, field", [
    ({"size": (0.04, 0.05, float("nan"))}, "size"),
    ({"mean_rgb": (float("nan"), 0.1, 0.1)}, "mean_rgb"),
    ({"mean_rgb": (0.5, 0.5)}, "mean_rgb"),                           # np.array would fail on the ragged rows
    ({"position": (0.5, float("inf"), 0.03)}, "position"),
])
def test_object_features_refuse_a_non_finite_object(changes, field):
    """The last guard before the model: np.clip keeps a NaN, and one NaN made every target probability NaN."""
    from koba_ros.grounding.features import object_features

    assert np.isfinite(object_features([red_cube(id=7), red_cube()], 4)).all()
    with pytest.raises(KobaError, match=f"object 3: {field} must be . finite numbers"):
        object_features([red_cube(id=7), red_cube(**changes)], 4)


def test_images_whose_size_fields_disagree_and_non_finite_intrinsics_are_one_line():
    """One such message used to end perception_node (a reshape error in its callback, or a NaN centre reaching int()
    in the segmenter), and with it a composed `koba up` graph."""
    stamp = Time(sec=1, nanosec=0)
    rgb = rgb_to_msg(np.zeros((4, 6, 3), np.uint8), stamp, "camera")
    rgb.data = bytes(rgb.data)[:10]
    depth = depth_to_msg(np.full((4, 6), 0.8, np.float32), stamp, "camera", "32FC1")
    depth.step = 3  # not a whole number of 4-byte samples
    for convert, msg in ((msg_to_rgb, rgb), (msg_to_depth, depth)):
        with pytest.raises(KobaError, match="size fields do not agree") as info:
            convert(msg)
        assert "\n" not in str(info.value)
    for bad in (float("nan"), float("inf")):
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        K[0, 2] = bad
        with pytest.raises(KobaError, match="non-finite"):
            msg_to_K(camera_info_msg(K, 640, 480, stamp, "camera"))


def test_a_big_endian_depth_image_is_read_in_its_own_byte_order():
    stamp = Time(sec=1, nanosec=0)
    for dtype, encoding, value in ((">f4", "32FC1", 0.8), (">u2", "16UC1", 800)):
        msg = depth_to_msg(np.full((2, 3), 0.8, np.float32), stamp, "camera", encoding)
        msg.data = np.full((2, 3), value, dtype=dtype).tobytes()
        msg.is_bigendian = 1
        np.testing.assert_allclose(msg_to_depth(msg), 0.8, rtol=1e-6)


@pytest.mark.ros
def test_perception_node_refuses_a_rate_it_would_divide_by_and_says_why(ros_context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.perception_node import PerceptionNode

    for name, value in (("max_rate", 0.0), ("max_rate", float("nan")), ("depth_scale", -1.0)):
        node = PerceptionNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])
        try:
            assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
            assert node.failure.startswith(f"{name} must be a finite number > 0")
        finally:
            node.destroy_node()


@pytest.mark.ros
def test_perception_node_refuses_a_camera_pose_that_is_no_rotation(ros_context):
    """A NaN, or a typo in one of the 16 numbers, used to pass (only the last row was checked) and put every
    object nowhere: an empty object list, no error."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.perception_node import PerceptionNode
    from koba_ros.sim.layout import camera_pose

    good = camera_pose()
    for broken in ((0, 0, float("nan")), (0, 1, good[0, 1] + 0.5), (1, 0, -good[1, 0])):   # the last: a mirror
        pose = good.copy()
        pose[broken[0], broken[1]] = broken[2]
        node = PerceptionNode(context=ros_context,
                              parameter_overrides=[Parameter("camera_pose", value=[float(v) for v in pose.ravel()])])
        try:
            assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
            assert node.failure.startswith("camera_pose must be finite with a rotation"), node.failure
        finally:
            node.destroy_node()
    node = PerceptionNode(context=ros_context)   # the default pose still configures
    try:
        assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()
