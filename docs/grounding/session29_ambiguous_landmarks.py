"""Session 29: relation instructions whose landmark words fit two objects in the target's box, each singling out a
different look-alike on the side said: the words are ambiguous, so the robot should ask. Counts the dialogue's first
reply, with look-alike landmarks (K) and without (H), on the same instructions. Kept as the record of the runs in
docs/grounding/session29_landmark_lookalike_rules.md.

With --bench, also the first replies of the bench's clear and relation instructions on those scenes (right at once,
acted wrong, asked), as session 28's ablation counted them: the held-out look of rule 3.

Usage:
    PYTHONPATH=. .venv/bin/python docs/grounding/session29_ambiguous_landmarks.py val|val2|test FIRST COUNT [--bench]"""
import json
import sys
from collections import Counter

import numpy as np
import torch

from koba_ros.grounding.dialogue import Dialogue, Settings
from koba_ros.grounding.evaluation import BENCH_KINDS, bench_samples
from koba_ros.grounding.grounder import Grounder
from koba_ros.grounding.instructions import (
    RELATION,
    SIDE_GAP_PX,
    InstructionGenerator,
    _centre_x,
    _names_with,
    box_phrase,
)
from koba_ros.grounding.scenes import perceived_scenes

torch.set_num_threads(1)
split, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scenes = [sc for a in range(first, first + count, 60) for sc in perceived_scenes(range(a, a + 60), progress=False)]
gen = InstructionGenerator(split, 3)
cat = gen.catalog
rng = np.random.default_rng(5)


def singled(objects, in_box, lm, side):
    xs = [_centre_x(o) for o in objects]
    on = sorted((abs(xs[i] - xs[lm]), i) for i in in_box if (xs[i] < xs[lm]) == (side == "left"))
    if not on or on[0][0] <= SIDE_GAP_PX or (len(on) > 1 and on[1][0] - on[0][0] <= SIDE_GAP_PX):
        return None
    return on[0][1]


def samples_of(scene):
    objs, names = scene.objects, scene.names
    out = []
    for t in range(len(objs)):
        noun = str(rng.choice(_names_with(split, cat[names[t]])))
        look = [i for i, n in enumerate(names) if noun in cat[n].synonyms]
        box = objs[t].box
        in_box = [i for i in look if objs[i].box == box]
        if len(in_box) < 2:
            continue
        for lm1 in range(len(objs)):
            if lm1 in look or objs[lm1].box != box:
                continue
            for w in _names_with(split, cat[names[lm1]]):
                fit = [i for i, n in enumerate(names) if w in cat[n].synonyms]
                others = [j for j in fit if j != lm1 and objs[j].box == box and j not in look]
                for side in ("left", "right"):
                    if singled(objs, in_box, lm1, side) != t:
                        continue
                    alt = {singled(objs, in_box, j, side) for j in others} - {None, t}
                    if alt:
                        text = str(rng.choice(RELATION[split][side])).format(n=noun, lm=f"the {w}")
                        if len(in_box) < len(look):
                            text += f" in {box_phrase(box, split, rng)}"
                        text += f" and put it in the {str(rng.choice(['top left', 'bottom right']))} box"
                        out.append((text, t, sorted(alt)))
    return out[:3]


def outcome(d, r, t, alt) -> str:
    if r.status == "question":
        return f"asked_{d.pending}_" + ("both" if {t, *alt} <= set(r.candidates) else "not_both")
    if r.status == "done":
        return "acted_target" if r.target == t else "acted_alt" if r.target in alt else "acted_other"
    return r.status


g = Grounder()
samples = [(sc, *s) for sc in scenes for s in samples_of(sc)]
out = {"split": split, "scenes": [first, first + count], "n": len(samples)}
for name, look_alikes in (("H", False), ("K", True)):
    c = Counter()
    for sc, text, t, alt in samples:
        d = Dialogue(g, sc.objects, Settings(landmark_look_alikes=look_alikes))
        c[outcome(d, d.start(text), t, alt)] += 1
    out[name] = dict(c)
    out[name]["acted"] = sum(v for k, v in c.items() if k.startswith("acted"))
    if "--bench" in sys.argv:
        for kind, bench in bench_samples(scenes, BENCH_KINDS, split=split).items():
            if kind not in ("clear", "relation"):
                continue
            first_replies = Counter()
            for s in bench:
                r = Dialogue(g, s.objects, Settings(landmark_look_alikes=look_alikes)).start(s.text)
                first_replies["right" if r.status == "done" and r.target == s.target and r.destination == s.destination
                              else "wrong" if r.status == "done" else "asked"] += 1
            out[name][kind] = dict(first_replies)
print(json.dumps(out))
