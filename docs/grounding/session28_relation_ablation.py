"""Session 28 ablation of R' on fresh scenes: which of its composition changes costs what (first turns of clear and
relation instructions; the dialogue is the working tree's, compose patched per variant). Kept as the record of the
runs in docs/grounding/session28_relation_composition_rules.md, which ran it with relations.py as committed at be4c719
(C2's composition): "C2" below is whatever relations.compose is when it runs.

Usage: PYTHONPATH=. .venv/bin/python docs/grounding/session28_relation_ablation.py val|val2|test FIRST COUNT [V1,V2]"""
import dataclasses
import json
import sys
from collections import Counter

import numpy as np
import torch

from koba_ros.grounding import relations
from koba_ros.grounding.dialogue import Dialogue
from koba_ros.grounding.evaluation import BENCH_KINDS, bench_samples
from koba_ros.grounding.grounder import Grounder
from koba_ros.grounding.instructions import SIDE_GAP_PX
from koba_ros.grounding.scenes import perceived_scenes

torch.set_num_threads(1)
split, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scenes = [sc for a in range(first, first + count, 60) for sc in perceived_scenes(range(a, a + 60), progress=False)]
samples = bench_samples(scenes, BENCH_KINDS, split=split)
g = Grounder()

def fit_of(p, ratio, fitting):
    top = float(p.max()) if p.size else 0.0
    f = np.minimum(1.0, p / (ratio * top)) if top > 0 else np.zeros_like(p)
    f[[i for i in fitting if 0 <= i < len(f)]] = 1.0
    return f

def make(half=True, tie=True, plane=True, lm_alike=True, to_none=True):
    def compose(rest, landmark, objects, side, fit_ratio, words_fit=frozenset(), landmark_fit=frozenset()):
        n = len(objects)
        obj = rest.target_probs[:n]
        none = float(rest.target_probs[n])
        fit = fit_of(obj, fit_ratio, words_fit)
        lf = fit_of(landmark.target_probs[:n], fit_ratio, landmark_fit) if lm_alike else landmark.target_probs[:n]
        pl = lf / max(float(lf.sum()), 1e-12)
        c = np.array([(o.bbox[0] + o.bbox[2] / 2, o.bbox[1] + o.bbox[3] / 2) for o in objects], float)
        mass, un = np.zeros(n), 0.0
        for lm in np.flatnonzero(pl > 1e-4):
            off = c - c[lm]
            dist = np.abs(off[:, 0]) if (side or not plane) else np.hypot(off[:, 0], off[:, 1])
            def on(dx):
                if side is None:
                    return 1.0
                a = -dx if side == "left" else dx
                if not half:
                    return 1.0 if a > 0 else 0.0
                return 1.0 if a > SIDE_GAP_PX else 0.5 if a > 0 else 0.0
            q = np.array([fit[i] * on(off[i, 0]) if i != lm and objects[i].box == objects[lm].box else 0.0
                          for i in range(n)])
            margin = SIDE_GAP_PX if tie else 0.0
            w = np.array([q[i] * np.prod(1 - q[dist < dist[i] - margin]) for i in range(n)])
            m = 1 - float(np.prod(1 - q))
            if w.sum() > 0:
                mass += pl[lm] * m * w / w.sum()
            un += pl[lm] * (1 - m)
        if to_none:
            return dataclasses.replace(rest, target_probs=np.append((1 - none) * mass, none + (1 - none) * un))
        spread = obj / obj.sum() if obj.sum() > 0 else np.full(n, 1 / n)
        return dataclasses.replace(rest, target_probs=np.append((1 - none) * (mass + un * spread), none))
    return compose

def read(grounder, text, objects, fit_ratio=0.1, words_fit=None):
    relation = relations.parse(text)
    if relation is None or not objects:
        return grounder.ground(text, objects), False
    whole, rest, landmark = grounder.ground_batch([text, relation.rest or ".", relation.landmark], [objects] * 3)
    if landmark.none_prob >= 0.5:
        return whole, False
    wf = words_fit or (lambda t: frozenset())
    return relations.compose(rest, landmark, objects, relation.side, fit_ratio, wf(relation.rest),
                             wf(relation.landmark)), True

C2 = relations.compose
variants = {"C2": None, "R1": make(), "R1-half": make(half=False), "R1-tie": make(tie=False),
            "R1-lm": make(lm_alike=False), "R1-none": make(to_none=False),
            "H": make(lm_alike=False, to_none=False)}
if len(sys.argv) > 4:
    variants = {k: variants[k] for k in sys.argv[4].split(",")}
out = {"split": split, "scenes": [first, first + count], "n": {k: len(samples[k]) for k in ("clear", "relation")}}
for name, comp in variants.items():
    if comp is None:
        def as_c2(rest, landmark, objects, side, fit_ratio, words_fit=frozenset(), landmark_fit=frozenset()):
            return C2(rest, landmark, objects, side, fit_ratio, words_fit)

        relations.compose = as_c2
    else:
        relations.compose = comp
    relations.read = read
    res = {}
    for kind in ("clear", "relation"):
        c = Counter()
        for s in samples[kind]:
            r = Dialogue(g, s.objects).start(s.text)
            c["right" if r.status == "done" and r.target == s.target and r.destination == s.destination
              else "wrong" if r.status == "done" else "asked"] += 1
        res[kind] = dict(c)
    out[name] = res
    print(name, res, flush=True)
print(json.dumps(out))
