"""Session 25 review of perception_node: frames paired by nearest stamp in either order, a warning naming the missing
input, small depth holes filled, a camera_info of another size refused, and a clean reconfigure."""
import numpy as np
import pytest
from builtin_interfaces.msg import Time

from koba_ros.perception.depth_holes import fill_depth_holes
from koba_ros.perception.frame_pairing import StampPairer, missing_input
from koba_ros.perception.messages import camera_info_msg, depth_to_msg, rgb_to_msg
from koba_ros.perception.segmenter import perceive
from koba_ros.sim.layout import camera_intrinsics, camera_pose

FPS = 15
RGB = np.full((480, 640, 3), 128, np.uint8)


def stamp_ns(k: int) -> int:
    return k * 10**9 // FPS


def block_depth() -> np.ndarray:
    """A 40x40 px block 4 cm above the table in the top-left box (one object)."""
    depth = np.full((480, 640), 0.79, np.float32)
    depth[100:140, 200:240] = 0.75
    return depth


# --- pairing (ROS-free) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth_first", [False, True])
def test_every_frame_pairs_whichever_of_its_two_messages_comes_first(depth_first):
    """Only the last colour frame was held: with depth first, a 15 fps camera's depth always met the previous colour
    frame (67 ms off, over the 50 ms tolerance) and not one frame paired."""
    pairer, pairs = StampPairer(0.05), []
    for k in range(30):
        arrivals = [("depth", f"d{k}"), ("color", f"c{k}")] if depth_first else [("color", f"c{k}"), ("depth", f"d{k}")]
        for kind, frame in arrivals:
            pair = pairer.add(kind, stamp_ns(k), frame)
            if pair is not None:
                pairs.append(pair)
    assert pairs == [(f"c{k}", f"d{k}") for k in range(30)]


@pytest.mark.parametrize("depth_first", [False, True])
@pytest.mark.parametrize("lost", [("color", 5), ("depth", 5)])
def test_a_lost_frame_at_30_fps_costs_that_frame_only(depth_first, lost):
    """At 30 fps frames are 33 ms apart, under the 50 ms tolerance: pairing an arrival at once with the nearest waiting
    frame paired colour k+1 with depth k after one lost message, and every later pair stayed one frame off (94 of
    99 mismatched; review of session 25)."""
    pairer, pairs = StampPairer(0.05), []
    for k in range(40):
        for kind in ("depth", "color") if depth_first else ("color", "depth"):
            if (kind, k) != lost:
                pair = pairer.add(kind, round(k * 1e9 / 30), k)
                pairs += [pair] if pair is not None else []
    assert pairs == [(k, k) for k in range(40) if k != 5]


def test_the_nearest_stamp_pairs_and_older_waiting_frames_go():
    pairer = StampPairer(0.05)
    for k in range(3):
        assert pairer.add("color", stamp_ns(k), f"c{k}") is None   # depth of frames 0-2 dropped
    assert pairer.add("depth", stamp_ns(2) + 1_000_000, "d2") == ("c2", "d2")   # not c1 (within tolerance too)
    assert not pairer.waiting["color"], "frames older than the pair stay waiting for a partner that will not come"
    assert pairer.add("depth", stamp_ns(9), "d9") is None and pairer.add("color", stamp_ns(3), "c3") is None
    assert pairer.last_gap_s == pytest.approx(6 / FPS)


def test_which_input_is_missing():
    def missing(**heard):
        arrivals = {"depth_at": 9.0, "color_at": 9.0, "has_info": True, "paired_at": 9.0, **heard}
        return missing_input(10.0, 0.0, 3.0, **arrivals)

    assert missing() is None
    assert missing(depth_at=None, color_at=None) == "depth"
    assert missing(color_at=5.0) == "color"
    assert missing(has_info=False) == "info"
    assert missing(paired_at=None) == "stamps"
    assert missing_input(2.0, 0.0, 3.0, depth_at=None, color_at=None, has_info=False, paired_at=None) is None


# --- depth holes (ROS-free) -----------------------------------------------------------------------------------------
def holes(kind: str) -> np.ndarray:
    depth = block_depth()
    if kind == "stripe":
        depth[100:140, 219:221] = np.nan            # a 2-px drop-out across the object (80 px)
    else:
        rng = np.random.default_rng(0)
        mask = np.zeros(depth.shape, bool)
        mask[100:140, 200:240] = rng.random((40, 40)) < 0.2
        depth[mask] = np.nan
    return depth


@pytest.mark.parametrize("kind", ["stripe", "random"])
def test_small_depth_holes_no_longer_split_an_object(kind):
    K, pose = camera_intrinsics(), camera_pose()
    depth = holes(kind)
    assert len(perceive(RGB, depth, K, pose)) > 1              # what the segmenter makes of the holes themselves
    filled = fill_depth_holes(depth, 256)
    objects = perceive(RGB, filled, K, pose)
    assert [o.bbox for o in objects] == [(200, 100, 40, 40)]
    valid = np.isfinite(depth)
    assert filled[valid].tobytes() == depth[valid].tobytes(), "a valid pixel changed"
    assert set(np.unique(filled[~valid])) <= {np.float32(0.75), np.float32(0.79)}   # nearest surfaces, no mix


def test_large_holes_stay_invalid_and_zero_counts_as_no_reading():
    depth = block_depth()
    depth[300:340, 300:340] = np.nan          # 1600 px: nothing around it tells what is there
    depth[100:140, 219:221] = 0.0             # a 16UC1 camera's "no reading"
    filled = fill_depth_holes(depth, 256)
    assert np.isnan(filled[300:340, 300:340]).all()
    assert (filled[101:139, 219:221] == np.float32(0.75)).all()   # its end pixels are as near the table
    assert not np.isnan(depth[100:140, 219:221]).any(), "the input was changed"


def test_a_simulated_frame_passes_bit_identical():
    from koba_ros.perception.messages import msg_to_depth
    from koba_ros.sim.cell import SimCell
    from koba_ros.sim.scene import parse_scene

    scene = parse_scene({"seed": 0, "objects": [{"name": "red_cube", "box": "top_left"},
                                                {"name": "duck", "box": "bottom_right"}]})
    with SimCell(scene) as cell:
        depth = cell.render().depth
    for frame in (depth, msg_to_depth(depth_to_msg(depth, Time(), "cam", "16UC1"))):
        filled = fill_depth_holes(frame, 256)
        assert filled.dtype == frame.dtype and filled.tobytes() == frame.tobytes()


# --- perception_node ------------------------------------------------------------------------------------------------
class Recorder:
    """Stands in for the node's publisher and logger."""

    def __init__(self):
        self.published, self.said = [], []

    def publish(self, msg):
        self.published.append(msg)

    def logger(self):
        outer = self

        class Logger:
            def __getattr__(self, level):
                return lambda text, **kwargs: outer.said.append((level, text))

        return Logger()


@pytest.fixture
def perception(ros_context):
    from rclpy.lifecycle import TransitionCallbackReturn

    from koba_ros.nodes.perception_node import PerceptionNode

    made = []

    def make(**parameters):
        from rclpy.parameter import Parameter

        node = PerceptionNode(context=ros_context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        made.append(node)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        recorder = Recorder()
        node.publisher, node.get_logger = recorder, recorder.logger
        return node, recorder

    yield make
    for node in made:
        node.destroy_node()


def time_of(k: int) -> Time:
    return Time(sec=stamp_ns(k) // 10**9, nanosec=stamp_ns(k) % 10**9)


def test_perception_node_perceives_frames_whose_depth_comes_first(perception):
    node, out = perception()
    node.on_info(camera_info_msg(camera_intrinsics(), 640, 480, Time(), "cam"))
    for k in range(10):
        node.last_run = 0.0   # no rate limit here
        node.on_depth(depth_to_msg(block_depth(), time_of(k), "cam"))
        node.on_color(rgb_to_msg(RGB, time_of(k), "cam"))
    assert len(out.published) == 10 and all(len(m.objects) == 1 for m in out.published)
    assert [m.header.stamp for m in out.published] == [time_of(k) for k in range(10)]


@pytest.mark.parametrize("missing, says", [
    ("info", "no camera_info on /camera/color/camera_info"),
    ("color", "no colour image on /camera/color/image_raw"),
    ("stamps", "stamps are never within stamp_tolerance 0.05 s (nearest 0.500 s apart)"),
])
def test_perception_node_says_which_input_keeps_it_from_perceiving(perception, monkeypatch, missing, says):
    """It published nothing and said nothing: its only warning looked at depth frames."""
    import types

    import koba_ros.nodes.perception_node as perception_node

    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(perception_node, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    node, out = perception()
    node.check_frames()                 # its first check, as it starts spinning: the wait is counted from here
    clock.now += 10.0                   # it has listened for 10 s; the frames below come now
    for k in range(3):
        if missing != "info":
            node.on_info(camera_info_msg(camera_intrinsics(), 640, 480, time_of(k), "cam"))
        if missing != "color":
            node.on_color(rgb_to_msg(RGB, Time(sec=k, nanosec=500_000_000 if missing == "stamps" else 0), "cam"))
        node.on_depth(depth_to_msg(block_depth(), Time(sec=k), "cam"))
    node.check_frames()
    assert out.published == []
    assert len(out.said) == 1 and out.said[0][0] == "warning" and says in out.said[0][1], out.said


def test_perception_node_refuses_a_camera_info_of_another_image_size(perception):
    node, out = perception()
    node.on_info(camera_info_msg(camera_intrinsics(1280, 960), 1280, 960, Time(sec=1), "cam"))
    node.on_color(rgb_to_msg(RGB, Time(sec=1), "cam"))
    node.on_depth(depth_to_msg(block_depth(), Time(sec=1), "cam"))
    assert out.published == []
    assert out.said == [("error", "camera_info is for 1280x960 images, the images are 640x480: frame skipped "
                                  "(camera_info of another stream?)")]


@pytest.mark.parametrize("fill", [True, False])
def test_perception_node_fills_small_depth_holes_unless_told_not_to(perception, fill):
    node, out = perception(fill_depth_holes=fill)
    node.on_info(camera_info_msg(camera_intrinsics(), 640, 480, Time(), "cam"))
    node.on_color(rgb_to_msg(RGB, Time(sec=1), "cam"))
    node.on_depth(depth_to_msg(holes("stripe"), Time(sec=1), "cam", "16UC1"))   # the stripe as 0 mm
    assert len(out.published) == 1 and len(out.published[0].objects) == (1 if fill else 2)


def test_perception_node_refuses_a_max_hole_size_of_zero(ros_context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.perception_node import PerceptionNode

    node = PerceptionNode(context=ros_context, parameter_overrides=[Parameter("max_hole_px", value=0)])
    try:
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node.failure == "max_hole_px must be a finite number > 0, got 0"
    finally:
        node.destroy_node()


def test_perception_node_reconfigured_subscribes_checks_and_publishes_once(ros_context):
    """Without on_cleanup, configure -> cleanup -> configure left two of each: every frame perceived twice."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from koba_ros.nodes.perception_node import PerceptionNode

    node = PerceptionNode(context=ros_context)
    try:
        for step in ("configure", "cleanup", "configure"):
            assert getattr(node, f"trigger_{step}")() == TransitionCallbackReturn.SUCCESS
        topics = sorted(s.topic_name for s in node.subscriptions if s.topic_name.startswith("/camera"))
        assert topics == ["/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info",
                          "/camera/color/image_raw"]
        assert len(list(node.timers)) == 1 and node.count_publishers("/perception/objects") == 1
    finally:
        node.destroy_node()


def test_a_paired_frame_is_checked_and_its_depth_made_ready_without_ros():
    from koba_ros.errors import KobaError
    from koba_ros.perception.camera_frame import depth_for_segmenter

    rgb, depth = np.zeros((48, 64, 3)), np.full((48, 64), 0.5)
    depth[10, 10] = np.nan
    assert np.isnan(depth_for_segmenter(rgb, depth, (48, 64), None)[10, 10])      # not filled when told not to
    assert depth_for_segmenter(rgb, depth, (0, 0), 16)[10, 10] == 0.5            # a size-less camera_info passes
    with pytest.raises(KobaError, match="camera_info is for 128x96 images, the images are 64x48"):
        depth_for_segmenter(rgb, depth, (96, 128), 16)
    with pytest.raises(KobaError, match="sizes differ"):
        depth_for_segmenter(rgb, depth[:, :32], None, 16)


def test_perception_node_counts_the_wait_for_frames_from_when_it_spins(perception, monkeypatch):
    """Found by a walkthrough (session 26): in a composed `koba up picking` the other nodes take ~12 s to build before
    anything spins, so the wait counted from configure had run out at the first check, and every start warned
    "waiting for camera frames" although frames came a moment later."""
    import types

    import koba_ros.nodes.perception_node as perception_node

    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(perception_node, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    node, out = perception()
    clock.now += 12.0                   # the rest of the graph is built; now it spins
    node.check_frames()
    assert out.said == []
    clock.now += 5.0                    # and then no frame comes
    node.check_frames()
    assert len(out.said) == 1 and "waiting for camera frames" in out.said[0][1]
