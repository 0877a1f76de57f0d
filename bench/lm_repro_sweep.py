"""Run one reproduction with some of its size settings changed, to find where an effect appears.

    python bench/lm_repro_sweep.py spike --set lrs=[0.01] --seed 1
    python bench/lm_repro_sweep.py b2t --set steps=150
    python bench/lm_repro_sweep.py shape --set steps=1500 --set max_shift=100

Every reproduction trains its baseline and its variants in the same process, so the printed JSON (the repro's
results, without per-step traces) compares them directly. The numbers in docs/nlp.md's diagnosis come from here.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from koba_ros.errors import KobaError  # noqa: E402
from koba_ros.nlp.repro import run_repro  # noqa: E402

TRACES = ("grad_norms", "layer_grad_norms")  # long per-step lists: in the JSON file, not on stdout


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise KobaError(f"--set wants key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="b2t shape alone spike wso expand")
    parser.add_argument("--size", default="test", help="the size whose settings are changed (default test)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a size setting (JSON value)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="", help="folder for NAME.json/.png (default: a temporary folder)")
    args = parser.parse_args(argv)
    try:
        sizes = importlib.import_module(f"koba_ros.nlp.repro.{args.name}").SIZES
    except ModuleNotFoundError as exc:
        raise KobaError(f"no reproduction named {args.name!r}") from exc
    if args.size not in sizes:
        raise KobaError(f"{args.name} has sizes {', '.join(sizes)}, not {args.size!r}")
    for key, value in map(parse_setting, args.set):
        if key not in sizes[args.size]:
            raise KobaError(f"{args.name} size {args.size} has no setting {key!r} ({', '.join(sizes[args.size])})")
        sizes[args.size][key] = value
    out = args.out or tempfile.mkdtemp(prefix=f"lm_sweep_{args.name}_")
    result = run_repro(args.name, quick=False, device=args.device, out=out, seed=args.seed, size=args.size)
    print(json.dumps({k: v for k, v in result.items() if k not in TRACES}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KobaError as exc:
        print(f"lm_repro_sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)
