"""Clarification dialogue benchmark: the dialogue at a git revision ("before") vs the working tree ("after"), same
model, same scenes, same generated instructions, same run; failures broken down by ambiguity kind, question type
and answer type. Prints one JSON object.

Ambiguity kinds: duplicate (the words fit several objects of one catalog entry), shared_attribute (several
entries share the words: "the green item"), missing_box (the object is clear, the box is not said).
Question types (the robot's first reply): choice (names 2-3 objects), by_box (too many to name), confirm
(yes/no about one), destination (which box), done / rejected (no question). Answer types: what the scripted
person said first (box, colour, side, noun, correction "no, ...", yes/no, destination).

`--person legacy` replays the old scripted person (the sample's answer, whatever the question) to show how
much of the old number was the test's answers rather than the dialogue.

Clear instructions are broken down too: acted right, acted on the wrong object or box, asked although the model's
top-1 object and box were right, asked with one of them wrong (a question that saved a wrong move), refused; and
which rule of the dialogue made it ask (Dialogue.why: below ask_below, look-alikes, pick not of the kind named, box
not said or unsure, ...). Ambiguous instructions acted on without a question are split by ambiguity kind and by
whether the object moved is one the words fit; absent objects moved by whether the robot asked first.

    .venv/bin/python bench/grounding_dialogue.py [--scenes 20] [--baseline-rev 3de1220] [--split test]
    .venv/bin/python bench/grounding_dialogue.py --split val --models A.pt B.pt A.pt+B.pt [--fit-gate DIR]

With --models it compares grounders instead of dialogues: the working-tree dialogue with each (a weight file, an
ensemble file, or a '+' deep ensemble), same samples, same run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from koba_ros.cli import print_json
from koba_ros.commands.arg_types import positive_int
from koba_ros.grounding import lexicon
from koba_ros.grounding.dialogue import Dialogue
from koba_ros.grounding.evaluation import BENCH_KINDS, bench_samples, scripted_answer

ROOT = Path(__file__).resolve().parents[1]


def dialogue_at(rev: str):
    """The Dialogue class of koba_ros/grounding/dialogue.py as committed at `rev` (git show, loaded as a module)."""
    source = subprocess.run(["git", "show", f"{rev}:koba_ros/grounding/dialogue.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "dialogue_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("dialogue_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Dialogue


def legacy_answer(sample, pending, reply) -> str:
    """The old scripted person: the box for a box question, yes/no, else the sample's answer whatever was asked."""
    wanted = sample.destination or sample.answer_destination
    if pending == "destination":
        return wanted.replace("_", " ") if wanted else "I don't know"
    if pending == "confirm":
        return "yes" if reply.candidates[:1] == [sample.target] else "no"
    return sample.answer or "I don't know"


def question_type(reply, pending) -> str:
    if reply.status != "question":
        return reply.status
    if pending == "target" and "could fit" in reply.text:
        return "by_box"
    return {"target": "choice"}.get(pending, pending)


def answer_type(text: str, pending: str) -> str:
    if pending == "destination":
        return "destination"
    if pending == "confirm" and text in ("yes", "no"):
        return text
    if text.startswith("no,"):
        return "correction"
    kinds = [k for k, hit in (("box", lexicon.parse_box(text)), ("side", lexicon.side(text)),
                              ("colour", any(w in lexicon.PALETTE for w in lexicon.words(text)))) if hit]
    return "+".join(kinds) or "noun"


def ambiguity(sample) -> str:
    if sample.kind == "no_box":
        return "missing_box"
    return "duplicate" if len({sample.names[i] for i in sample.referents}) == 1 else "shared_attribute"


class CountingGrounder:
    """Counts the texts grounded (the model's work per turn; timings would mostly measure the text encoder's
    per-text cache, which the runs share)."""

    def __init__(self, grounder):
        self.grounder, self.texts = grounder, 0

    def ground(self, text, objects):
        return self.ground_batch([text], [objects])[0]

    def ground_batch(self, texts, object_lists):
        self.texts += len(texts)
        return self.grounder.ground_batch(texts, object_lists)


def run_sample(grounder, sample, dialogue_class, person, texts_grounded: list | None = None):
    counting = CountingGrounder(grounder)
    d = dialogue_class(counting, sample.objects)
    first = reply = d.start(sample.text)
    if texts_grounded is not None:
        texts_grounded.append(counting.texts)
    first_q, answers = question_type(first, d.pending), []
    while reply.status == "question":
        text = person(sample, d.pending, reply)
        answers.append(answer_type(text, d.pending))
        reply = d.answer(text)
    return d, first, reply, first_q, answers


def evaluate_clear(grounder, clear, dialogue_class, person) -> dict:
    done_right = asked = 0
    texts_grounded = []
    outcomes, asked_why = defaultdict(int), defaultdict(lambda: [0, 0])
    for s in clear:
        d, first, _, _, _ = run_sample(grounder, s, dialogue_class, person, texts_grounded)
        asked += first.status == "question"
        right = first.status == "done" and first.target == s.target and first.destination == s.destination
        done_right += right
        # The reading the dialogue acted on (since session 28 it keeps it: a relation's is composed); an older
        # dialogue's is the whole words'.
        g = getattr(d, "first_reading", None) or grounder.ground(s.text, s.objects)
        top_right = g.ranked()[0][0] == s.target and g.destination[0] == s.destination
        outcomes["acted right" if right else "acted wrong" if first.status == "done" else
                 ("asked, top-1 and box right" if top_right else "asked, top-1 or box wrong")
                 if first.status == "question" else first.status] += 1
        if first.status == "question":
            asked_why[getattr(d, "why", "") or "?"][0] += top_right
            asked_why[getattr(d, "why", "") or "?"][1] += 1
    return {"n": len(clear), "accuracy": done_right / len(clear), "question_rate": asked / len(clear),
            "first_turn": dict(sorted(outcomes.items())),
            "asked_why_top1_and_box_right": {k: f"{a}/{m}" for k, (a, m) in sorted(asked_why.items())},
            "texts_grounded_first_turn_mean": float(np.mean(texts_grounded))}


def evaluate(grounder, samples, dialogue_class, person) -> dict:
    out, rows = {}, []
    for kind in ("clear", "relation"):      # relation: clear instructions that say a landmark
        if samples.get(kind):
            out[kind] = evaluate_clear(grounder, samples[kind], dialogue_class, person)
    for s in samples["ambiguous"] + samples["no_box"]:
        d, first, final, q, answers = run_sample(grounder, s, dialogue_class, person)
        want = s.destination or s.answer_destination
        ok = final.status == "done" and final.target == s.target and final.destination == want
        if ok:
            why = "ok"
        elif final.status == "done":
            why = "wrong target" if final.target != s.target else "wrong box"
        else:
            why = "gave up" if "still can't tell" in final.text else final.status
        acted = "-" if first.status != "done" else "fits the words" if first.target in s.referents else "does not fit"
        rows.append({"kind": ambiguity(s), "question": q, "answer": answers[0] if answers else "-", "ok": ok,
                     "why": why, "asked": first.status == "question", "turns": d.questions, "acted": acted})
    n = len(rows)
    out["ambiguous"] = {"n": n, "question_rate": sum(r["asked"] for r in rows) / n,
                        "correct_after_answer": sum(r["ok"] for r in rows) / n,
                        "mean_questions": sum(r["turns"] for r in rows) / n}
    for key in ("kind", "question", "answer", "why"):
        table = defaultdict(lambda: [0, 0])
        for r in rows:
            table[r[key]][0] += r["ok"]
            table[r[key]][1] += 1
        out["ambiguous"][f"by_{key}"] = {k: f"{a}/{m}" for k, (a, m) in sorted(table.items())}
    unasked = defaultdict(int)
    for r in rows:
        if r["acted"] != "-":
            unasked[f"{r['kind']}, moved an object that {r['acted']}"] += 1
    out["ambiguous"]["acted_without_question"] = dict(sorted(unasked.items()))
    absent = samples["absent"]
    moved = defaultdict(int)
    for s in absent:
        _, first, final, _, _ = run_sample(grounder, s, dialogue_class, person)
        if final.status == "done":
            moved["after a question" if first.status == "question" else "at once"] += 1
    out["absent"] = {"n": len(absent), "no_motion": 1 - sum(moved.values()) / len(absent), "moved": dict(moved)}
    return out


def load(spec: str, fit_dir: str, result: dict):
    """The grounder a --models entry names; a '+' ensemble with --fit-gate gets its gate fitted and saved first."""
    from koba_ros.atomic_write import write_atomically
    from koba_ros.grounding.calibration import fit_ensemble
    from koba_ros.grounding.grounder import Grounder

    if "+" not in spec:
        return Grounder(spec)
    members = spec.split("+")
    if not fit_dir:
        return Grounder(members)
    out = Path(fit_dir) / ("ensemble_" + "+".join(Path(m).stem for m in members) + ".json")
    fitted = fit_ensemble(members)
    if out.exists():  # a fitted gate is a result: never replaced silently
        raise SystemExit(f"{out} already exists; remove it or give another --fit-gate folder")
    fitted["members"] = [os.path.relpath(Path(m).resolve(), out.parent.resolve()) for m in members]
    write_atomically(out, lambda tmp: tmp.write_text(json.dumps(fitted, indent=1) + "\n"))
    result.setdefault("ensemble_files", {})[spec] = {"file": str(out), **fitted}
    return Grounder(str(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=positive_int, default=20,
                    help="Held-out rendered scenes, seeds 100000.. (default 20).")
    ap.add_argument("--first-scene", type=int, default=100000,
                    help="Seed of the first scene (default 100000; another range is a fresh set of unseen scenes).")
    ap.add_argument("--split", choices=["test", "val", "val2", "train"], default="test",
                    help="Phrasings (default: held out; val, val2: the two validation splits, to choose rules on).")
    ap.add_argument("--baseline-rev", default="3de1220", help="Git revision of the 'before' dialogue (default: the "
                    "last commit before the session-3 gate: kinds named by the words, generic words).")
    ap.add_argument("--person", choices=["scripted", "legacy", "both"], default="scripted",
                    help="Scripted person(s) to run 'before' with (the new one always runs 'after').")
    ap.add_argument("--model", default="", help="Grounding weights or ensemble file (default "
                    "models/grounding/grounding_default.json).")
    ap.add_argument("--models", nargs="+", default=None,
                    help="Instead of before vs after: the working-tree dialogue with each of these grounders, same "
                         "samples, same run. Each is a weight file, an ensemble file (.json) or members joined by "
                         "'+' (a deep ensemble; its gate temperatures 1 unless --fit-gate).")
    ap.add_argument("--fit-gate", default="", metavar="DIR",
                    help="Fit the gate temperatures of each '+' ensemble on its validation phrasings (training scenes, "
                         "calibration.fit_ensemble) and write its ensemble file into DIR.")
    args = ap.parse_args(argv)
    import torch

    from koba_ros.grounding.grounder import Grounder
    from koba_ros.grounding.scenes import perceived_scenes

    torch.set_num_threads(1)
    scenes = perceived_scenes(range(args.first_scene, args.first_scene + args.scenes), progress=False)
    samples = bench_samples(scenes, BENCH_KINDS, split=args.split)
    result = {"scenes": len(scenes), "phrasings": args.split, "samples": {k: len(v) for k, v in samples.items()},
              "results": {}}
    if args.models:
        runs = [(spec, Dialogue, scripted_answer, load(spec, args.fit_gate, result)) for spec in args.models]
    else:
        grounder = Grounder(args.model or None)
        before = dialogue_at(args.baseline_rev)
        people = {"scripted": scripted_answer, "legacy": legacy_answer}
        runs = [(f"before_{p}_person", before, people[p], grounder)
                for p in (["scripted", "legacy"] if args.person == "both" else [args.person])]
        runs.append(("after_scripted_person", Dialogue, scripted_answer, grounder))
        result["baseline_rev"] = args.baseline_rev
    for name, dialogue_class, person, grounder in runs:
        start = time.perf_counter()
        result["results"][name] = evaluate(grounder, samples, dialogue_class, person)
        result["results"][name]["eval_seconds"] = round(time.perf_counter() - start, 1)
    print_json(result)
    return 0


if __name__ == "__main__":
    from koba_ros.errors import KobaError

    try:
        sys.exit(main())
    except KobaError as exc:  # a bad model file or setting: one line, as the koba command gives it
        sys.exit(f"bench/grounding_dialogue.py: error: {exc}")
