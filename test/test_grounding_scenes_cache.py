"""The perceived-scene cache is named by the code that makes its objects, so a changed segmenter renders again."""
import pickle

from koba_ros.grounding import scenes


def test_the_cache_name_follows_the_perception_code(tmp_path, monkeypatch):
    version = scenes.perception_version()
    assert len(version) == 10 and version == scenes.perception_version()
    # Another set of sources (as after an edit to one of them) gives another name.
    monkeypatch.setattr(scenes, "PERCEPTION_SOURCES", scenes.PERCEPTION_SOURCES[1:])
    assert scenes.perception_version() != version
    monkeypatch.undo()

    monkeypatch.setenv("KOBA_CACHE", str(tmp_path))
    stale = tmp_path / "grounding" / "scenes_7_8.pkl"          # an old, unversioned cache is not read
    stale.parent.mkdir(parents=True)
    stale.write_bytes(pickle.dumps(["not scenes"]))
    (scene,) = scenes.perceived_scenes(range(7, 8), progress=False)
    assert scene.seed == 7 and scene.objects and len(scene.names) == len(scene.objects)
    assert (tmp_path / "grounding" / f"scenes_7_8_{version}.pkl").is_file()
