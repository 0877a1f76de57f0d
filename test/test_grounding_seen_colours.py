"""The camera's colour of each catalog entry (models/grounding/seen_colours.json): how it is measured, and that the
committed table belongs to today's perception."""
import json

import numpy as np

from koba_ros.grounding import seen_colours
from koba_ros.grounding.scenes import PerceivedScene, perception_version
from koba_ros.grounding.synthetic import perceive_synthetic
from koba_ros.sim.catalog import load_catalog


def test_measure_takes_each_entrys_median_over_its_labelled_objects():
    rng = np.random.default_rng(0)
    spec = [{"name": "duck", "box": "top_left", "xy": [0.0, 0.0]}, {"name": "mug", "box": "top_right", "xy": [0, 0]}]
    scenes = []
    for _ in range(5):
        objects = perceive_synthetic(spec, rng)
        scenes.append(PerceivedScene(seed=0, objects=objects, names=["duck", None], scene_index=[0, 1]))
    table = seen_colours.measure(scenes)
    assert list(table) == ["duck"]     # an unlabelled object (no scene object within reach) counts for no entry
    expected = np.median([s.objects[0].mean_rgb for s in scenes], axis=0)
    assert np.allclose(table["duck"], expected, atol=1e-4)


def test_the_committed_table_covers_the_catalog_and_belongs_to_todays_perception():
    # Regenerate with `python -m koba_ros.grounding.seen_colours` when perception changes (this test says so).
    data = json.loads(seen_colours.default_path().read_text())
    assert data["perception"] == perception_version(), "perception changed: regenerate seen_colours.json"
    assert set(data["seen_rgb"]) == set(load_catalog())
    table = seen_colours.load()
    assert all(len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb) for rgb in table.values())
    # What the session-8 dialogue change rests on: the camera sees the jenga block (tan) nearer the teddy bear
    # (brown) than the reference tan is.
    jenga, bear = np.array(table["jenga_block"]), np.array(table["teddy_bear"])
    assert np.linalg.norm(jenga - bear) < np.linalg.norm(jenga - np.array([0.80, 0.66, 0.46]))


def test_a_missing_table_leaves_the_reference_colours(tmp_path):
    assert seen_colours.load(str(tmp_path / "absent.json")) == {}
