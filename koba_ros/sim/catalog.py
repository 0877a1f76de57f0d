"""The object catalog (sim/objects/catalog.yaml): what each object is called and looks like."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from koba_ros.errors import KobaError
from koba_ros.paths import sim_dir

BOXES = ("top_left", "top_right", "bottom_left", "bottom_right")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    color: str
    rgba: tuple[float, float, float, float]
    category: str
    shape: str
    material: str
    synonyms: tuple[str, ...]
    descriptions: tuple[str, ...] = ()
    pattern: str = ""
    urdf: str = ""                     # pybullet_data file, or "" for a primitive
    scale: float = 1.0
    primitive: str = ""                # box | sphere | cylinder | mug
    size: tuple[float, ...] = field(default_factory=tuple)
    rest_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)   # orientation it rests in (before its yaw)


@cache
def load_catalog(path: str | None = None) -> dict[str, CatalogEntry]:
    path = Path(path) if path else sim_dir() / "objects" / "catalog.yaml"
    try:
        raw = yaml.safe_load(path.read_text())["objects"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise KobaError(f"cannot read the object catalog {path}: {exc}") from None
    catalog = {}
    for name, a in raw.items():
        catalog[name] = CatalogEntry(
            name=name, color=a["color"], rgba=tuple(a["rgba"]), category=a["category"], shape=a["shape"],
            material=a["material"], synonyms=tuple(a["synonyms"]), descriptions=tuple(a.get("descriptions", ())),
            pattern=a.get("pattern", ""), urdf=a.get("urdf", ""), scale=float(a.get("scale", 1.0)),
            primitive=a.get("primitive", ""), size=tuple(a.get("size", ())),
            rest_rpy=tuple(float(v) for v in a.get("rest_rpy", (0.0, 0.0, 0.0))),
        )
    return catalog
