"""The symbolic baseline: a keyword parser plus attribute matching, the bar the learned model must beat.

Parser: the longest catalog synonym or description in the text names the object (a generic word such
as "one" or "thing" names any object), a colour word narrows it, box words are split into the object's
location ("from the top left box") and the destination (the last box named otherwise), and "left"/"right"
picks the extreme candidate. Matching: each catalog entry's typical perceived attributes (colour word,
shape word, height) are read off the training scenes; an object fits a noun when its attributes are one
of those prototypes. It returns a Grounding like the learned model (uniform over what fits).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from koba_ros.grounding import lexicon
from koba_ros.grounding.grounder import DEST_LABELS, Grounding
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import load_catalog

GENERIC = ("one", "thing", "object", "item")
COLOURS = ("red", "green", "blue", "yellow", "white", "brown", "tan")


def perceived_signature(obj: PerceivedObject) -> tuple[str, str, int]:
    """(catalog colour word nearest the mean colour, the segmenter's shape word, height in whole cm)."""
    attrs = dict(a.split(":", 1) for a in obj.attributes if ":" in a)
    return lexicon.colour_name(obj.mean_rgb), attrs.get("shape", ""), int(round(obj.size[2] * 100))


class SymbolicGrounder:
    def __init__(self, training_scenes=()):
        self.catalog = load_catalog()
        phrases = []
        for name, entry in self.catalog.items():
            for p in (*entry.synonyms, *entry.descriptions):
                phrases.append((p.removeprefix("the "), name))
        self.phrases = sorted(phrases, key=lambda p: -len(p[0]))
        # Prototype signatures per catalog entry, read off perceived training scenes.
        counts: dict[str, Counter] = {n: Counter() for n in self.catalog}
        for scene in training_scenes:
            for obj, name in zip(scene.objects, scene.names, strict=False):
                counts[name][perceived_signature(obj)] += 1
        self.prototypes = {n: {sig for sig, k in c.items() if k >= 0.1 * sum(c.values())} for n, c in counts.items()}

    def parse(self, text: str) -> dict:
        t = " " + " ".join(lexicon.words(text)) + " "
        entries, noun_span = None, ""
        for phrase, _ in self.phrases:
            if f" {phrase} " in t:
                entries = {n for p, n in self.phrases if p == phrase}
                noun_span = phrase
                break
        rest = t.replace(f" {noun_span} ", " ") if noun_span else t
        if entries is None and any(f" {g} " in t for g in GENERIC):
            entries = set(self.catalog)
        colour = next((c for c in COLOURS if f" {c} " in rest), None)
        mentions = lexicon.box_mentions(text)
        tokens = lexicon.words(text)
        location = destination = None
        if len(mentions) >= 2:
            location, destination = mentions[0][1], mentions[-1][1]
        elif mentions:
            pos, box = mentions[0]
            before = tokens[max(0, pos - 4):pos]
            if "from" in before or "sitting" in before or "is" in before:
                location = box
            else:
                destination = box
        side = lexicon.side(text)
        return {"entries": entries, "colour": colour, "location": location, "destination": destination, "side": side}

    def fits(self, obj: PerceivedObject, entries, colour) -> bool:
        sig = perceived_signature(obj)
        if colour and sig[0] != colour:
            return False
        if entries is None:
            return colour is not None
        return any(sig in self.prototypes[n] or (not self.prototypes[n] and sig[0] == self.catalog[n].color)
                   for n in entries)

    def ground(self, text: str, objects: list[PerceivedObject]) -> Grounding:
        q = self.parse(text)
        hits = [i for i, o in enumerate(objects) if self.fits(o, q["entries"], q["colour"])
                and (q["location"] is None or o.box == q["location"])]
        if q["side"] and len(hits) > 1:
            xs = {i: objects[i].bbox[0] + objects[i].bbox[2] / 2 for i in hits}
            hits = [min(hits, key=xs.get) if q["side"] == "left" else max(hits, key=xs.get)]
        target = np.zeros(len(objects) + 1)
        if hits:
            target[hits] = 1.0 / len(hits)
        else:
            target[-1] = 1.0
        dest = np.zeros(len(DEST_LABELS))
        dest[DEST_LABELS.index(q["destination"])] = 1.0
        return Grounding(target, dest)

    def ground_batch(self, texts, object_lists) -> list[Grounding]:
        return [self.ground(t, o) for t, o in zip(texts, object_lists, strict=False)]
