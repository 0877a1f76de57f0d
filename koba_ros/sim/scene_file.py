"""A scene file as the commands and nodes read it: scene.load_scene, with every bad file as one line.

Kept out of scene.py on purpose: scene.py is one of the perception sources whose hash names every cached scene set
and the seen-colour table (grounding/scenes.py PERCEPTION_SOURCES), and this changes nothing about perception."""
from __future__ import annotations

from pathlib import Path

from koba_ros.errors import KobaError, reason
from koba_ros.sim.scene import Scene, load_scene


def read_scene_file(path: str | Path) -> Scene:
    try:
        return load_scene(path)
    except UnicodeDecodeError:
        raise KobaError(f"scene {path} is not UTF-8 JSON text") from None
    except RecursionError:
        raise KobaError(f"scene {path}: JSON nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # What scene.parse_scene lets through to numpy or Python: a negative seed, a name that is a list, an integer
        # too large for a float, an integer over Python's digit limit.
        if "non-negative" in str(exc):
            raise KobaError(f"scene {path}: seed must be a non-negative integer") from None
        raise KobaError(f"scene {path}: not a valid scene file ({reason(exc)})") from None
