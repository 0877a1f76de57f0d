"""One reproduction per file; each exposes run(quick, device, out, seed) -> dict and writes <name>.json/.png."""
from __future__ import annotations

import importlib
import json
from pathlib import Path


def run_repro(name: str, quick: bool, device: str, out: str, seed: int = 0) -> dict:
    module = importlib.import_module(f"koba_ros.nlp.repro.{name}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = module.run(quick=quick, device=device, out=out_dir, seed=seed)
    result = {"repro": name, "quick": quick, "device": device, **result}
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result
