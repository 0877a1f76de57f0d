"""Scripted-person evaluation of a grounder + dialogue on generated instructions (bench and tests share it).

The scripted person answers a question about the object with the sample's answer (the box, colour or
side that singles out the target), a question about the box with the destination, and "no" to a
yes/no question about an object that is not the target.
"""
from __future__ import annotations

import time

import numpy as np

from koba_ros.grounding import lexicon
from koba_ros.grounding.dialogue import Dialogue, Settings
from koba_ros.grounding.instructions import HELD_OUT_WORDS, Sample
from koba_ros.grounding.training import make_samples

BENCH_KINDS = {"clear": 10, "ambiguous": 4, "no_box": 3, "absent": 3}


def bench_samples(scenes, per_kind: dict | None = None, seed: int = 7, split: str = "test") -> dict[str, list[Sample]]:
    per_kind = per_kind or BENCH_KINDS
    return {k: make_samples(scenes, split, n, seed + i, {k: 1.0}) for i, (k, n) in enumerate(per_kind.items())}


def play(grounder, sample: Sample, settings: Settings | None = None) -> tuple[Dialogue, object, int]:
    """Run the dialogue with the scripted person; returns (dialogue, first reply, final reply)."""
    d = Dialogue(grounder, sample.objects, settings)
    first = reply = d.start(sample.text)
    wanted_box = sample.destination or sample.answer_destination
    while reply.status == "question":
        if d.pending == "destination":
            reply = d.answer(wanted_box.replace("_", " ") if wanted_box else "I don't know")
        elif d.pending == "confirm":
            reply = d.answer("yes" if reply.candidates[:1] == [sample.target] else "no")
        else:
            reply = d.answer(sample.answer or "I don't know")
    return d, first, reply


def evaluate_grounder(grounder, samples: dict[str, list[Sample]], settings: Settings | None = None) -> dict:
    out = {}
    clear = samples.get("clear", [])
    if clear:
        first_ok = asked = top1 = 0
        by_name = {True: [0, 0], False: [0, 0]}   # held-out object word in the text? -> [correct, n]
        by_word: dict[str, list[int]] = {}         # each held-out object word -> [top-1 target right, n]
        for s in clear:
            _, first, _ = play(grounder, s, settings)
            asked += first.status == "question"
            ok = first.status == "done" and first.target == s.target and first.destination == s.destination
            first_ok += ok
            right = grounder.ground(s.text, s.objects).ranked()[0][0] == s.target
            top1 += right
            said = [w for w in HELD_OUT_WORDS if f" {w} " in f" {' '.join(lexicon.words(s.text))} "]
            held = bool(said)
            for w in said:
                by_word.setdefault(w, [0, 0])[0] += right
                by_word[w][1] += 1
            by_name[held][0] += ok
            by_name[held][1] += 1
        out["clear"] = {"n": len(clear), "accuracy": first_ok / len(clear), "question_rate": asked / len(clear),
                        "target_top1": top1 / len(clear),
                        "accuracy_held_out_object_words": by_name[True][0] / max(by_name[True][1], 1),
                        "accuracy_seen_object_words": by_name[False][0] / max(by_name[False][1], 1),
                        "n_held_out_object_words": by_name[True][1],
                        "target_top1_by_held_out_word": {w: f"{c}/{n}" for w, (c, n) in sorted(by_word.items())}}
    amb = samples.get("ambiguous", []) + samples.get("no_box", [])
    if amb:
        asked = ok = turns = 0
        for s in amb:
            d, first, final = play(grounder, s, settings)
            asked += first.status == "question"
            want = s.destination or s.answer_destination
            ok += final.status == "done" and final.target == s.target and final.destination == want
            turns += d.questions
        out["ambiguous"] = {"n": len(amb), "question_rate": asked / len(amb), "correct_after_answer": ok / len(amb),
                            "mean_questions": turns / len(amb)}
    absent = samples.get("absent", [])
    if absent:
        moved = rejected_first = 0
        for s in absent:
            _, first, final = play(grounder, s, settings)
            moved += final.status == "done"
            rejected_first += first.status == "rejected"
        out["absent"] = {"n": len(absent), "no_motion": 1 - moved / len(absent),
                         "refused_at_once": rejected_first / len(absent)}
    return out


def latency_ms(grounder, objects, texts: list[str]) -> dict:
    """Median and p90 ms of one grounding turn over unseen texts (text encoding included)."""
    grounder.ground(texts[0], objects)  # warm-up
    times = []
    for t in texts[1:]:
        start = time.perf_counter()
        grounder.ground(t, objects)
        times.append((time.perf_counter() - start) * 1000)
    return {"objects": len(objects), "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}


assert lexicon.parse_box("top right") == "top_right"
