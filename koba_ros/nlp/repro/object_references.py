"""The data methods' task: the robot's pick instructions ("put the toy that quacks in the top right box"), each
labelled with the catalog object it names. Names that fit two objects are left out: 178 names of 19 objects."""
from __future__ import annotations

import itertools
import random


def object_reference_sentences(rng: random.Random, per_name: int) -> tuple[dict[str, list[tuple[str, int]]], int]:
    """{object name: per_name (sentence, object index) pairs, each a different template x box drawn with rng}, and
    the number of objects (classes)."""
    from koba_ros.sim.catalog import load_catalog
    from koba_ros.speech.domain_lm import PICK_TEMPLATES, SPOKEN_BOXES, names_of

    owners: dict[str, set[int]] = {}
    catalog = load_catalog()
    for k, entry in enumerate(catalog.values()):
        for name in names_of(entry):
            owners.setdefault(name, set()).add(k)
    by_name = {}
    for name in sorted(n for n, objects in owners.items() if len(objects) == 1):
        combos = list(itertools.product(PICK_TEMPLATES, SPOKEN_BOXES))
        rng.shuffle(combos)
        by_name[name] = [(template.format(o=name, b=box), next(iter(owners[name])))
                         for template, box in combos[:per_name]]
    return by_name, len(catalog)
