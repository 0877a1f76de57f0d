"""What the camera sees of each catalog entry's colour, so a colour word is compared with how its objects look.

People name an object's colour by what it is (the catalog: the jenga block is "tan", the domino "white"); the camera
sees it under the cell's lights and its own texture (the jenga block as a dark orange-brown nearer the teddy bear than
the word's textbook tan; the domino's black face). A colour word therefore fits an object by its distance to the
camera's colour of the entries of that colour, not to a textbook reference.

The table is the median mean colour of each entry's perceived objects over the training scenes, written once by
`python -m koba_ros.grounding.seen_colours` to models/grounding/seen_colours.json (it belongs to the scenes and
perception a model was trained on, like the model).
"""
from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from koba_ros.atomic_write import write_atomically
from koba_ros.paths import models_dir


def default_path() -> Path:
    return models_dir() / "grounding" / "seen_colours.json"


def measure(scenes) -> dict[str, list[float]]:
    """Median perceived mean RGB of each catalog entry over the scenes' labelled objects."""
    seen: dict[str, list] = {}
    for scene in scenes:
        for obj, name in zip(scene.objects, scene.names, strict=True):
            if name is not None:
                seen.setdefault(name, []).append(obj.mean_rgb)
    return {name: [round(float(v), 4) for v in np.median(np.array(rgbs), axis=0)]
            for name, rgbs in sorted(seen.items())}


@lru_cache(maxsize=4)
def load(path: str | None = None) -> dict[str, tuple[float, float, float]]:
    """entry -> the camera's colour of it; empty when the file is absent (then colour words fall back to the
    lexicon's reference colours)."""
    p = Path(path) if path else default_path()
    if not p.is_file():
        return {}
    return {name: tuple(rgb) for name, rgb in json.loads(p.read_text())["seen_rgb"].items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=300, help="Training scenes (seeds 0..N-1; cached or rendered).")
    ap.add_argument("--out", default=str(default_path()))
    args = ap.parse_args(argv)
    from koba_ros.grounding.scenes import perceived_scenes, perception_version

    table = measure(perceived_scenes(range(args.scenes)))
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(rgb)}" for name, rgb in table.items())
    text = f'{{"scenes": {args.scenes}, "perception": "{perception_version()}",\n "seen_rgb": {{\n{rows}\n }}\n}}\n'
    write_atomically(args.out, lambda tmp: tmp.write_text(text))
    print(f"wrote {args.out}: {len(table)} entries")


if __name__ == "__main__":
    main()
