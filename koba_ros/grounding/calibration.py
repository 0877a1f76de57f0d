"""Aim the asking gate: the target and destination temperatures that make the dialogue's first turn right most
often on the validation phrasings (wording in neither training nor test).

Temperature scaling by validation NLL (Guo et al., ICML 2017; training.fit_target_temperature) calibrates the
probabilities, but the dialogue compares them with fixed thresholds (act at p >= 0.7, refuse when "none" wins),
and on unseen wording the NLL temperature made the model ask on 39 % of clear instructions. Here the real
Dialogue runs its first turn on every validation sample at each temperature of a grid, and the temperature with
the least risk is kept. The three first-turn rates the issue sets targets for -- clear -> acted on the right object
and box; ambiguous or no box said -> asked; absent object -> did not move -- are not equally costly: the issue
allows 5 % misses on clear and on ambiguous instructions but only 2 % on absent objects. The risk counts each kind's
misses in units of its allowance (a decision-theoretic cost = 1 / allowed miss rate): 20 (1 - clear) +
20 (1 - ambiguous asked) + 50 (1 - absent not moved); before session 3 it was the plain mean of the rates, which
prices moving an absent object like an unneeded question. The destination temperature
is chosen first (the NLL one of the destination made the robot ask for a box it had right, p = 0.54-0.59
against the 0.6 threshold), then the target's.

Re-tempering is exact without re-running the network: softmax(log p / T) = softmax(z / T) for p = softmax(z).

The fit runs on several draws of validation phrasings of the same scenes (validation_phrasings, GATE_SAMPLES): on
one draw of 1350-2700 samples the chosen target temperature moved between 0.5 and 2.24 with the sample set.
Refit a saved model: `python -m koba_ros.grounding.calibration refit MODEL.pt OUT.pt [--draws K] [--halves] --json`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from koba_ros.atomic_write import write_atomically
from koba_ros.commands.arg_types import positive_int, thread_count
from koba_ros.grounding.dialogue import Dialogue
from koba_ros.grounding.grounder import Grounding, retemper
from koba_ros.grounding.instructions import Sample

TEMPERATURES = tuple(float(t) for t in np.geomspace(0.25, 4.0, 25))
ALLOWED_MISS = {"clear": 0.05, "ambiguous": 0.05, "absent": 0.02}   # the targets: >= 95 %, >= 95 %, >= 98 %
GATE_SAMPLES = 5400   # draws of validation phrasings until about this many samples (4 draws at 30 per scene)
# ... but at most this many draws: a small run (one validation scene) drew 270 times the same scene's phrasings and
# then replayed the dialogue on each for 50 temperatures, minutes of silent work after seconds of training. The
# recipes of the shipped models use 2-4 draws.
MAX_GATE_DRAWS = 8


class RetemperedGrounder:
    """A grounder whose target probabilities are re-tempered by `temperature`; groundings are computed once."""

    def __init__(self, grounder):
        self.grounder, self.memo = grounder, {}
        self.temperature = self.dest_temperature = 1.0

    def ground_batch(self, texts, object_lists):
        keys = [(t, tuple(id(o) for o in objs)) for t, objs in zip(texts, object_lists, strict=True)]
        new = [i for i, k in enumerate(keys) if k not in self.memo]
        if new:
            for i, g in zip(new, self.grounder.ground_batch([texts[i] for i in new], [object_lists[i] for i in new]),
                            strict=True):
                self.memo[keys[i]] = g
        return [Grounding(retemper(self.memo[k].target_probs, self.temperature),
                          retemper(self.memo[k].dest_probs, self.dest_temperature)) for k in keys]

    def ground(self, text, objects):
        return self.ground_batch([text], [objects])[0]


def first_turn_rates(grounder, samples: list[Sample]) -> dict[str, float]:
    hits: dict[str, list[bool]] = {"clear": [], "ambiguous": [], "absent": []}
    for s in samples:
        reply = Dialogue(grounder, s.objects).start(s.text)
        if s.kind == "clear":
            hits["clear"].append(reply.status == "done" and reply.target == s.target
                                 and reply.destination == s.destination)
        elif s.kind in ("ambiguous", "no_box"):
            hits["ambiguous"].append(reply.status == "question")
        else:
            hits["absent"].append(reply.status != "done")
    return {k: float(np.mean(v)) for k, v in hits.items() if v}


def gate_risk(rates: dict[str, float]) -> float:
    """Misses of each kind in units of the miss rate the issue allows it (lower is better)."""
    return float(sum((1.0 - r) / ALLOWED_MISS[k] for k, r in rates.items()))


def fit_gate_temperature(grounder, samples: list[Sample], base: tuple[float, float],
                         temperatures=TEMPERATURES, progress: bool = False) -> tuple[float, float, dict]:
    """(target temperature, destination temperature, first-turn rates at them). `grounder` already divides by
    `base` (target, destination); the results replace them."""
    # A RetemperedGrounder passed in keeps its groundings (fits on subsets of the same samples ground them once).
    retempered = grounder if isinstance(grounder, RetemperedGrounder) else RetemperedGrounder(grounder)
    from tqdm import tqdm

    chosen = list(base)
    rates: dict = {}
    bar = tqdm(total=2 * len(temperatures), desc=f"aim the asking gate ({len(samples)} samples)",
               disable=not progress)
    for which in (1, 0):            # destination first, then target
        best = -np.inf
        for t in temperatures:
            trial = list(chosen)
            trial[which] = t
            retempered.temperature, retempered.dest_temperature = trial[0] / base[0], trial[1] / base[1]
            r = first_turn_rates(retempered, samples)
            bar.update()
            score = -gate_risk(r)
            if score > best + 1e-9:
                best, pick, rates_at = score, t, r
        chosen[which], rates = pick, rates_at
    bar.close()
    return chosen[0], chosen[1], rates


def phrasing_draws(scenes, per_scene: int, seed: int, draws: int | None = None) -> list[Sample]:
    """Validation phrasings of `scenes`, `draws` times with seeds seed + 2 + j (draw 0 is the set training selects
    its epoch on); draws=None: enough draws for about GATE_SAMPLES samples, at most MAX_GATE_DRAWS. Same scenes, new
    wording each draw."""
    from koba_ros.grounding.training import make_samples

    samples = make_samples(scenes, "val", per_scene, seed + 2)
    draws = draws if draws is not None else min(MAX_GATE_DRAWS, max(1, round(GATE_SAMPLES / max(1, len(samples)))))
    for j in range(1, draws):
        samples += make_samples(scenes, "val", per_scene, seed + 2 + j)
    return samples


def validation_phrasings(config: dict, draws: int | None = None) -> list[Sample]:
    """The samples `koba train grounding` aims a model's gate on: phrasing_draws of the last 15 % of its training
    scenes (training.train), rebuilt from the model's saved training config."""
    from koba_ros.grounding.scenes import perceived_scenes
    from koba_ros.grounding.training import TrainConfig

    cfg = TrainConfig(**{k: v for k, v in config.get("train", {}).items() if k in TrainConfig.__dataclass_fields__})
    scenes = perceived_scenes(range(0, cfg.scenes), progress=False)
    n_val = max(1, int(len(scenes) * 0.15))
    return phrasing_draws(scenes[-n_val:], cfg.per_scene, cfg.seed, draws)


def fit_ensemble(paths: list[str]) -> dict:
    """An ensemble file's content for these members: the gate temperatures of their averaged distributions, fitted
    on the first member's validation phrasings like a single model's gate (its members' own temperatures stay)."""
    from koba_ros.grounding.grounder import Grounder

    ensemble = Grounder(list(paths))
    t_target, t_dest, rates = fit_gate_temperature(ensemble, validation_phrasings(ensemble.config), (1.0, 1.0))
    # With each member's hash, a member replaced later (retrained, say) is refused instead of silently mis-aimed.
    return {"members": [str(p) for p in paths], "t_target": t_target, "t_dest": t_dest, "gate_rates_val": rates,
            "sha256": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]}


def refit(model: str, out: str, draws: int | None = None, halves: bool = False) -> dict:
    """Aim a saved model's gate again on validation_phrasings(draws) and write a copy to `out`; with `halves`, also
    fit on the samples of the even and of the odd draws alone (how stable the choice is)."""
    import torch

    from koba_ros.errors import KobaError
    from koba_ros.grounding.grounder import Grounder

    t0 = time.perf_counter()
    check_writable(out)   # an unusable OUT fails now, not after minutes of rendering and fitting
    try:
        checkpoint = torch.load(model, weights_only=True)
        config = checkpoint["config"]
        base = (float(config["t_target"]), float(config["t_dest"]))
    except Exception as e:  # torch raises many types for a corrupt or foreign file (as Grounder does)
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise KobaError(f"cannot read grounding model {model}: {why}") from None
    samples = validation_phrasings(config, draws)
    per_draw = len(validation_phrasings(config, 1)) if halves else 0
    retempered = RetemperedGrounder(Grounder(model))
    t_target, t_dest, rates = fit_gate_temperature(retempered, samples, base)
    result = {"model": model, "out": out, "samples": len(samples), "before": [base[0], base[1]],
              "gate_rates_val_before": config.get("gate_rates_val"), "t_target": t_target, "t_dest": t_dest,
              "gate_rates_val": rates}
    if halves and per_draw and len(samples) >= 2 * per_draw:
        parts = [samples[i:i + per_draw] for i in range(0, len(samples), per_draw)]
        for name, half in (("even_draws", parts[0::2]), ("odd_draws", parts[1::2])):
            half_samples = [s for part in half for s in part]
            t, d, r = fit_gate_temperature(retempered, half_samples, base)
            result[name] = {"samples": len(half_samples), "t_target": t, "t_dest": d, "gate_rates_val": r}
    config.update(t_target=t_target, t_dest=t_dest, gate_rates_val=rates)
    try:   # whole or not at all: OUT may be the model itself, or one a running grounder reads
        write_atomically(out, lambda tmp: _save(torch, {"state_dict": checkpoint["state_dict"], "config": config}, tmp))
    except OSError as e:
        raise KobaError(f"cannot write {out}: {e.strerror or e}") from None
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _save(torch, obj, path: Path) -> None:
    with open(path, "wb") as f:   # opened here: torch.save given a path it cannot open raises RuntimeError, not OSError
        torch.save(obj, f)


def check_writable(out: str) -> None:
    """KobaError unless a model file can be written at `out` (its folder is made if missing)."""
    from koba_ros.errors import KobaError

    path = Path(out)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise KobaError(f"cannot write {out}: it is not a regular file")
    try:   # a file made and removed: permission bits alone say nothing to root, or on /proc
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise KobaError(f"cannot write {out}: {e.strerror or e}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m koba_ros.grounding.calibration")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("refit", help="aim a saved model's asking gate again; writes a copy")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--draws", type=positive_int, default=None,
                   help=f"validation-phrasing draws (default: about {GATE_SAMPLES} samples)")
    p.add_argument("--halves", action="store_true", help="also fit on the even and the odd draws alone")
    p.add_argument("--threads", type=thread_count, default=1)
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from koba_ros.errors import KobaError

    torch.set_num_threads(args.threads)
    try:
        result = refit(args.model, args.out, args.draws, args.halves)
    except KobaError as e:   # one line, like the koba command
        raise SystemExit(f"calibration: error: {e}") from None
    except OSError as e:     # the file system said no elsewhere (the scene cache, say): one line too
        where = f" {e.filename}" if e.filename else ""
        raise SystemExit(f"calibration: error: cannot use{where}: {e.strerror or e}") from None
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
