"""A scene file as the commands and nodes read it: scene.load_scene, with every bad file as one line.

Kept out of scene.py on purpose: scene.py is one of the perception sources whose hash names every cached scene set
and the seen-colour table (grounding/scenes.py PERCEPTION_SOURCES), and this changes nothing about perception."""
from __future__ import annotations

import json
import math
from pathlib import Path

from koba_ros.errors import KobaError, reason
from koba_ros.grounding.synthetic import entry_size  # rough catalog sizes; the meshes' are on the small side
from koba_ros.sim.scene import Scene, load_scene

TOP_LEVEL_FIELDS = ("seed", "objects")


def read_scene_file(path: str | Path) -> Scene:
    try:
        scene = load_scene(path)
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
    data = json.loads(Path(path).read_text())   # valid: load_scene has just read it
    unknown = sorted(set(data) - set(TOP_LEVEL_FIELDS))
    if unknown:   # {"seeds": 7} would load silently with seed 0
        raise KobaError(f"scene {path}: unknown field {unknown[0]!r} (fields: {', '.join(TOP_LEVEL_FIELDS)})")
    _check_overlaps(scene, data["objects"], path)
    return scene


def _check_overlaps(scene: Scene, items: list[dict], path) -> None:
    """Two objects whose given centres are closer than their footprints' inner radii overlap whatever their yaws:
    the physics would throw them apart into another scene. Drawn positions are not checked (parse_scene draws them
    with no clearance, and existing files must keep loading to the same scene)."""
    placed = [(i, o) for i, (o, item) in enumerate(zip(scene.objects, items, strict=True)) if "xy" in item]
    for k, (i, a) in enumerate(placed):
        for j, b in placed[k + 1:]:
            reach = (min(entry_size(a.name)[:2]) + min(entry_size(b.name)[:2])) / 2
            if a.box == b.box and math.dist(a.xy, b.xy) < reach:
                raise KobaError(f"scene {path}: objects {i} ({a.name}) and {j} ({b.name}) overlap in box {a.box}: "
                                f"centres {math.dist(a.xy, b.xy) * 100:.3g} cm apart, need {reach * 100:.3g} cm")
