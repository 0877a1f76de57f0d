"""A scene file as the commands and nodes read it: scene.load_scene, with a binary or non-UTF-8 file as one line.

Kept out of scene.py on purpose: scene.py is one of the perception sources whose hash names every cached scene set
and the seen-colour table (grounding/scenes.py PERCEPTION_SOURCES), and this changes nothing about perception."""
from __future__ import annotations

from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.sim.scene import Scene, load_scene


def read_scene_file(path: str | Path) -> Scene:
    try:
        return load_scene(path)
    except UnicodeDecodeError:
        raise KobaError(f"scene {path} is not UTF-8 JSON text") from None
