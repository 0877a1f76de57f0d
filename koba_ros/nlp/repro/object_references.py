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


THESAURUS_TEMPLATES = ("the {a} is also called the {b}", "a {a} is a {b}", "people call the {b} the {a}")


def thesaurus_sentences(rng: random.Random) -> list[str]:
    """Unlabelled text that says which names go together: for every ordered pair of one object's names, a sentence
    from a template drawn with rng ("the toy that quacks is also called the rubber duck"). What a pretrained model
    would know about the words, and no object labels."""
    from koba_ros.sim.catalog import load_catalog
    from koba_ros.speech.domain_lm import names_of

    return [rng.choice(THESAURUS_TEMPLATES).format(a=a, b=b) for entry in load_catalog().values()
            for a, b in itertools.permutations(sorted(names_of(entry)), 2)]


def description_names() -> set[str]:
    """The catalog's descriptive names ("toy that quacks", "cup you sip from"), which share few words with the
    object's other names."""
    from koba_ros.sim.catalog import load_catalog
    from koba_ros.speech.domain_lm import descriptions_of

    return set().union(*(descriptions_of(entry) for entry in load_catalog().values()))
