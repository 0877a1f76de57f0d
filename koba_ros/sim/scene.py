"""Scene files (DESIGN.md contract) and a seeded random scene generator.

    {"seed": 7, "objects": [{"name": "red_cube", "box": "top_left", "xy": [0.02, -0.03], "yaw": 0.4}, ...]}

`name` is a catalog entry, `box` one of the four boxes as seen in the overhead image, `xy` (metres, optional)
the offset from the box centre (x toward image right, y toward image bottom), `yaw` optional. Values left out
are drawn from `seed`, so a file always loads to the same scene.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.sim.catalog import load_catalog
from koba_ros.sim.layout import BOX_INNER, BOXES

MAX_OBJECTS = 40
# An object's centre stays this far inside the box walls, so 3-6 cm objects never start inside a wall.
CENTRE_MARGIN = 0.03
MAX_OFFSET = BOX_INNER / 2 - CENTRE_MARGIN


@dataclass(frozen=True)
class SceneObject:
    name: str
    box: str
    xy: tuple[float, float]      # offset from the box centre: x toward image right, y toward image bottom
    yaw: float


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[SceneObject, ...]

    def to_json(self) -> dict:
        return {"seed": self.seed, "objects": [
            {"name": o.name, "box": o.box, "xy": [round(o.xy[0], 4), round(o.xy[1], 4)], "yaw": round(o.yaw, 4)}
            for o in self.objects]}


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise KobaError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_scene(data, source: str = "scene") -> Scene:
    """Validate a scene dict; any problem is one KobaError line naming the object."""
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise KobaError(f"{source}: expected {{\"seed\": N, \"objects\": [...]}}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise KobaError(f"{source}: seed must be an integer, got {seed!r}")
    items = data["objects"]
    if not 1 <= len(items) <= MAX_OBJECTS:
        raise KobaError(f"{source}: a scene has 1..{MAX_OBJECTS} objects, got {len(items)}")
    catalog = load_catalog()
    rng = np.random.default_rng(seed)
    objects = []
    for i, item in enumerate(items):
        where = f"{source}: object {i}"
        if not isinstance(item, dict):
            raise KobaError(f"{where}: expected an object like {{\"name\": ..., \"box\": ...}}")
        unknown_keys = sorted(set(item) - {"name", "box", "xy", "yaw"})
        if unknown_keys:
            raise KobaError(f"{where}: unknown field {unknown_keys[0]!r} (fields: name, box, xy, yaw)")
        name, box = item.get("name"), item.get("box")
        if name not in catalog:
            raise KobaError(f"{where}: unknown object name {name!r}; see sim/objects/catalog.yaml")
        if box not in BOXES:
            raise KobaError(f"{where}: unknown box {box!r}; boxes: {', '.join(BOXES)}")
        # Draw the defaults whether or not they are given, so one object's values never shift another's.
        drawn_xy = rng.uniform(-MAX_OFFSET, MAX_OFFSET, size=2)
        drawn_yaw = rng.uniform(-math.pi, math.pi)
        xy = item.get("xy", list(drawn_xy))
        if not isinstance(xy, (list, tuple)) or len(xy) != 2:
            raise KobaError(f"{where}: xy must be [x, y] in metres, got {xy!r}")
        xy = (_number(xy[0], f"{where}: xy[0]"), _number(xy[1], f"{where}: xy[1]"))
        if max(abs(xy[0]), abs(xy[1])) > MAX_OFFSET + 1e-9:
            raise KobaError(f"{where}: xy {list(xy)} is outside box {box}: offsets must be within "
                            f"+-{MAX_OFFSET:.3f} m of the box centre")
        yaw = _number(item.get("yaw", drawn_yaw), f"{where}: yaw")
        objects.append(SceneObject(name, box, xy, yaw))
    return Scene(seed, tuple(objects))


def load_scene(path: str | Path) -> Scene:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise KobaError(f"cannot read scene {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KobaError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_scene(data, str(path))


def save_scene(scene: Scene, path: str | Path) -> None:
    Path(path).write_text(json.dumps(scene.to_json(), indent=1) + "\n")


def random_scene(seed: int, n_objects: int | None = None, clearance: float = 0.065) -> Scene:
    """A random scene: 1..40 catalog objects (repeats allowed) spread over the four boxes.

    Centres keep `clearance` apart inside a box where there is room (rejection sampling), so objects start
    separate as people lay them out; when a box is crowded the clearance shrinks rather than failing.
    """
    rng = np.random.default_rng(seed)
    names = sorted(load_catalog())
    n = int(n_objects) if n_objects is not None else int(rng.integers(1, MAX_OBJECTS + 1))
    if not 1 <= n <= MAX_OBJECTS:
        raise KobaError(f"a scene has 1..{MAX_OBJECTS} objects, got {n}")
    placed: dict[str, list[tuple[float, float]]] = {b: [] for b in BOXES}
    objects = []
    for _ in range(n):
        box = min(BOXES, key=lambda b: (len(placed[b]) + rng.uniform(0, 2.5)))   # roughly balanced, still random
        gap = clearance
        for attempt in range(400):
            xy = tuple(rng.uniform(-MAX_OFFSET, MAX_OFFSET, size=2))
            if all(math.dist(xy, other) >= gap for other in placed[box]):
                break
            if attempt % 50 == 49:
                gap *= 0.85
        placed[box].append(xy)
        objects.append(SceneObject(str(rng.choice(names)), box, (float(xy[0]), float(xy[1])),
                                   float(rng.uniform(-math.pi, math.pi))))
    return Scene(seed, tuple(objects))
