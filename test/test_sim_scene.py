"""Scene files: DESIGN.md's contract, one-line errors for bad input, the seeded generator."""
import json

import pytest

from koba_ros.errors import KobaError
from koba_ros.sim.catalog import load_catalog
from koba_ros.sim.layout import BOXES, box_at, box_regions
from koba_ros.sim.scene import MAX_OFFSET, load_scene, parse_scene, random_scene, save_scene


def write(tmp_path, data):
    path = tmp_path / "scene.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_contract_example_loads(tmp_path):
    scene = load_scene(write(tmp_path, {"seed": 7, "objects": [
        {"name": "red_cube", "box": "top_left", "xy": [0.02, -0.03], "yaw": 0.4},
        {"name": "duck", "box": "top_right"}]}))
    assert scene.seed == 7
    assert scene.objects[0].xy == (0.02, -0.03) and scene.objects[0].yaw == 0.4
    assert scene.objects[1].box == "top_right" and abs(scene.objects[1].xy[0]) <= MAX_OFFSET


def test_absent_values_come_from_the_seed(tmp_path):
    data = {"seed": 3, "objects": [{"name": "mug", "box": "bottom_left"}]}
    assert parse_scene(data) == parse_scene(data)
    assert parse_scene(data).objects[0].xy != parse_scene({**data, "seed": 4}).objects[0].xy


@pytest.mark.parametrize("data, message", [
    ({"seed": 1, "objects": [{"name": "unicorn", "box": "top_left"}]}, "unknown object name 'unicorn'"),
    ({"seed": 1, "objects": [{"name": "duck", "box": "middle"}]}, "unknown box 'middle'"),
    ({"seed": 1, "objects": [{"name": "duck", "box": "top_left", "xy": [0.5, 0]}]}, "outside box top_left"),
    ({"seed": 1, "objects": [{"name": "duck", "box": "top_left", "xy": [0.0]}]}, "xy must be"),
    ({"seed": 1, "objects": [{"name": "duck", "box": "top_left", "yaw": "x"}]}, "yaw must be a finite number"),
    ({"seed": 1, "objects": []}, "1..40 objects"),
    ({"seed": 1, "objects": [{"name": "duck", "box": "top_left"}] * 41}, "1..40 objects"),
    ({"objects": "duck"}, "expected"),
    ("{not json", "malformed JSON"),
])
def test_bad_scenes_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(KobaError, match=message) as err:
        load_scene(write(tmp_path, data))
    assert "\n" not in str(err.value)


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(KobaError, match="cannot read scene"):
        load_scene(tmp_path / "nope.json")
    (tmp_path / "garbage.json").write_bytes(bytes(range(256)))
    from koba_ros.sim.scene_file import read_scene_file

    with pytest.raises(KobaError, match="is not UTF-8 JSON text"):  # what `koba pick` and sim_node read through
        read_scene_file(tmp_path / "garbage.json")


def test_random_scenes_are_seeded_valid_and_round_trip(tmp_path):
    catalog = load_catalog()
    for seed in range(20):
        scene = random_scene(seed)
        assert 1 <= len(scene.objects) <= 40
        assert all(o.name in catalog and o.box in BOXES for o in scene.objects)
        save_scene(scene, tmp_path / "s.json")
        again = load_scene(tmp_path / "s.json")
        assert [(o.name, o.box) for o in again.objects] == [(o.name, o.box) for o in scene.objects]
    assert random_scene(5) == random_scene(5)
    assert len(random_scene(1, 40).objects) == 40
    with pytest.raises(KobaError):
        random_scene(1, 41)


def test_box_names_match_the_image_convention():
    regions = box_regions()
    # top = far from the robot (+x), left = image left = robot's left (+y)
    assert regions["top_left"].centre[0] > regions["bottom_left"].centre[0]
    assert regions["top_left"].centre[1] > regions["top_right"].centre[1]
    assert all(r.inner >= 0.18 for r in regions.values())
    for name, region in regions.items():
        assert box_at(*region.centre) == name
        x, y = region.offset_to_xy(0.05, 0.0)   # toward image right
        assert y < region.centre[1] and region.xy_to_offset(x, y) == pytest.approx((0.05, 0.0))


@pytest.mark.parametrize("data, message", [
    ({"seed": -1, "objects": [{"name": "duck", "box": "top_left"}]}, "seed must be a non-negative integer"),
    ({"seed": 1, "objects": [{"name": ["duck"], "box": "top_left"}]}, "not a valid scene file"),
    ('{"seed": 1, "objects": [{"name": "duck", "box": "top_left", "yaw": 1%s}]}' % ("0" * 400),
     "not a valid scene file"),                                                  # too large for a float
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"seed": 1, "objects": [], "x": 1%s}' % ("0" * 5000), "not a valid scene file"),  # over Python's digit limit
    ("{not json", "malformed JSON"),
])
def test_scene_files_that_scene_py_lets_through_are_one_line_errors_where_commands_read_them(tmp_path, data, message):
    """What `koba pick --scene`, sim_node and `koba up` read (sim/scene_file.py; scene.py is a perception source)."""
    from koba_ros.sim.scene_file import read_scene_file

    with pytest.raises(KobaError, match=message) as err:
        read_scene_file(write(tmp_path, data))
    assert "\n" not in str(err.value)
