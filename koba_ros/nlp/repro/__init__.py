"""One reproduction per file; each exposes run(quick, device, out, seed) -> dict and writes <name>.json/.png."""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from koba_ros.errors import KobaError

# their run(device=...) never moves a model: bag-of-n-gram and tiny word-encoder models, trained on the CPU whatever
# --device says. --device cuda is refused for them rather than recorded as the GPU they never used (session 29)
CPU_ONLY = frozenset({"instance", "phsic", "augment", "tickets", "turnover"})


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def run_repro(name: str, quick: bool, device: str, out: str, seed: int = 0, size: str | None = None) -> dict:
    """size: test | quick | full (default: quick with --quick, else full). The JSON's "quick" says whether the quick
    size's settings ran, however they were asked for (--size test gives them too, but for wso's seeds)."""
    import torch

    if quick and size == "full":  # each repro reads size before quick: this ran the full size recorded as quick
        raise KobaError("repro: --quick and --size full contradict each other; give one")
    if name in CPU_ONLY and device != "cpu":
        raise KobaError(f"repro {name} trains its models on the CPU only; use --device cpu")
    if device == "cpu":  # models this small run faster on one thread than on two contended ones (no OMP spinning)
        torch.set_num_threads(1)
    module = importlib.import_module(f"koba_ros.nlp.repro.{name}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = size or ("quick" if quick else "full")  # resolved once, here: the size that runs is the one recorded
    result = module.run(quick=quick, device=device, out=out_dir, seed=seed, size=size)
    quick_ran = module.SIZES[size] == module.SIZES["quick"]
    result = {"repro": name, "quick": quick_ran, "device": _device_name(device), **result,
              "wall_s": round(time.perf_counter() - started, 1)}
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result
