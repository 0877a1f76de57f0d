"""Grounder: a trained GroundingNet + its text encoder, answering one instruction about one scene.

`Grounding` is what every grounder returns (the symbolic baseline too): a distribution over the
perceived objects plus "none of them", and over the four boxes plus "not said".
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from koba_ros.errors import KobaError, reason
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.crop_encoder import CropEncoder
from koba_ros.grounding.features import PAIR_DIM, object_features, pair_features
from koba_ros.grounding.model import GroundingNet
from koba_ros.grounding.text_encoders import ByteTransformerEncoder, MiniLMEncoder
from koba_ros.paths import models_dir
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import BOXES, load_catalog

DEST_LABELS = (*BOXES, None)


@dataclass
class Grounding:
    target_probs: np.ndarray      # [N + 1], last = none of them
    dest_probs: np.ndarray        # [5], last = not said

    @property
    def none_prob(self) -> float:
        return float(self.target_probs[-1])

    def ranked(self) -> list[tuple[int, float]]:
        """Object indices by probability, best first (without "none")."""
        p = self.target_probs[:-1]
        return [(int(i), float(p[i])) for i in np.argsort(-p)]

    @property
    def destination(self) -> tuple[str | None, float]:
        k = int(np.argmax(self.dest_probs))
        return DEST_LABELS[k], float(self.dest_probs[k])


def default_model_path() -> Path:
    """What Grounder() loads: since session 9 a deep ensemble file (four 600-scene models, two recipes at two seeds
    each, with the gate temperatures fitted for their average; docs/grounding.md "Session 9")."""
    return models_dir() / "grounding" / "grounding_default.json"


def single_model_path() -> Path:
    """The single seed-0 model (the ensemble's first member, byte for byte); `koba train grounding` writes here."""
    return models_dir() / "grounding" / "grounding.pt"


def scene_tensors(objects: list[PerceivedObject], appearance_dim: int, cache: dict | None = None,
                  crop_encoder: CropEncoder | None = None):
    """Object and pair features of one scene (text-independent), memoised in `cache` by the list's identity (and
    the crop encoder's). With a crop encoder the object features end with its CROP_DIM features of each crop."""
    key = (id(objects), id(crop_encoder))
    if cache is not None and key in cache and cache[key][0] is objects:
        return cache[key][1]
    x = torch.from_numpy(object_features(objects, appearance_dim))
    if crop_encoder is not None:
        x = torch.cat([x, crop_encoder.embed(objects)], 1)
    feats = (x, torch.from_numpy(pair_features(objects)))
    if cache is not None:
        cache[key] = (objects, feats)
    return feats


def batch_inputs(texts, object_lists, encoder, net: GroundingNet, appearance_dim: int, cache: dict | None = None):
    """Tensors for a batch: text states + mask, padded object and pair features + object mask."""
    if net.text_encoder is not None:
        states, mask = net.text_encoder(texts)
    else:
        states, mask = encoder(texts)
    n = max(1, max(len(objs) for objs in object_lists))
    objects = torch.zeros(len(texts), n, net.object_dim)
    pairs = torch.zeros(len(texts), n, n, PAIR_DIM)
    obj_mask = torch.zeros(len(texts), n, dtype=torch.bool)
    for b, objs in enumerate(object_lists):
        k = len(objs)
        if k:
            objects[b, :k], pairs[b, :k, :k] = scene_tensors(objs, appearance_dim, cache, net.crop_encoder)
            obj_mask[b, :k] = True
    return states, mask, objects, pairs, obj_mask


def average_groundings(groundings: list[Grounding]) -> Grounding:
    """Deep-ensemble prediction (Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty
    Estimation using Deep Ensembles", NeurIPS 2017, Sec. 2.4): p(y | x) = 1/M sum_m p_m(y | x), the members'
    predictive distributions averaged, for the target (objects + "none of them") and for the destination (boxes +
    "not said") alike. Averaging probabilities (not logits) keeps each a proper distribution and spreads the mass
    where the members disagree, which is the uncertainty the paper's ensembles add. none_prob, ranked() and
    destination are read off these averages, so they stay consistent with them."""
    if not groundings:
        raise KobaError("an ensemble needs at least one member's grounding")
    shapes = {(g.target_probs.shape, g.dest_probs.shape) for g in groundings}
    if len(shapes) != 1:
        raise KobaError(f"ensemble members disagree on the scene: distributions of shapes {sorted(shapes)}")
    return Grounding(np.mean([g.target_probs for g in groundings], axis=0),
                     np.mean([g.dest_probs for g in groundings], axis=0))


def retemper(p: np.ndarray, t: float) -> np.ndarray:
    """softmax(log p / t): the same distribution at temperature t (exact: softmax(z / t) for p = softmax(z))."""
    logp = np.log(np.maximum(p, 1e-30)) / t
    q = np.exp(logp - logp.max())
    return q / q.sum()


def read_manifest(path: Path) -> tuple[list[Path], tuple[float, float]]:
    """An ensemble file: {"members": [weight files, relative to this file], "t_target": .., "t_dest": .., and
    optionally "sha256": [one per member]}. The temperatures were fitted for those exact members' average, so with
    hashes a member that was replaced (retrained, say) is one clear error instead of a silently mis-aimed gate."""
    if not path.is_file():
        raise KobaError(f"grounding ensemble {path} not found")
    try:
        spec = json.loads(path.read_text())
        members = [path.parent / m for m in spec["members"]]
        temperature = (float(spec.get("t_target", 1.0)), float(spec.get("t_dest", 1.0)))
        hashes = spec.get("sha256")
        if hashes is not None and len(hashes) != len(members):
            raise ValueError(f"{len(hashes)} sha256 for {len(members)} members")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KobaError(f"cannot read grounding ensemble {path}: {reason(exc)}") from None
    for member, expected in zip(members, hashes or [], strict=False):
        if member.is_file() and hashlib.sha256(member.read_bytes()).hexdigest() != expected:
            raise KobaError(f"grounding ensemble {path}: {member.name} is not the file its gate was fitted for; "
                            "fit it again (bench/grounding_dialogue.py --fit-gate DIR --models A+B+...)")
    return members, temperature


class Member:
    """One trained GroundingNet + its text encoder (a Grounder has one, an ensemble several)."""

    def __init__(self, path: Path, minilm=MiniLMEncoder):
        if not path.is_file():
            raise KobaError(f"grounding model {path} not found; train it with `koba train grounding`")
        # Everything read from the file is checked in one place: a foreign or damaged file (another architecture's
        # weights, a missing key, a wrong type) is one line, whichever step it fails.
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            cfg = ckpt["config"]
            self.config, self.encoder_kind = cfg, cfg["encoder"]
            if self.encoder_kind not in ("minilm", "byte"):
                raise ValueError(f"unknown text encoder {self.encoder_kind!r}")
            self.appearance_dim = int(cfg["appearance_dim"])
            self.temperature = (float(cfg.get("t_target", 1.0)), float(cfg.get("t_dest", 1.0)))
            if not all(0 < t < math.inf for t in self.temperature):  # NaN fails too; a negative one reverses ranks
                raise ValueError(f"temperatures must be finite and > 0, got {self.temperature}")
            if self.encoder_kind == "minilm":
                text_module, text_dim = None, MiniLMEncoder.dim
            else:
                text_module = ByteTransformerEncoder(**cfg.get("byte", {}))
                text_dim = text_module.dim
            self.net = GroundingNet(text_dim, self.appearance_dim, cfg["hidden"], text_module)
            self.net.load_state_dict(ckpt["state_dict"])
        except Exception as exc:  # noqa: BLE001 - torch and the net raise many types for a corrupt or foreign file
            raise KobaError(f"cannot read grounding model {path}: {reason(exc)}") from None
        self.path = path
        self.encoder = minilm() if self.encoder_kind == "minilm" else None
        self.net.eval()

    @torch.no_grad()
    def ground_batch(self, texts: list[str], object_lists: list[list[PerceivedObject]], inputs=None) -> list[Grounding]:
        """`inputs`: batch_inputs already built for this batch (members sharing the frozen encoder share them)."""
        if inputs is None:
            inputs = batch_inputs(texts, object_lists, self.encoder, self.net, self.appearance_dim)
        target, dest, _ = self.net(*inputs)
        tt, td = self.temperature
        out = []
        for b, objs in enumerate(object_lists):
            logits = torch.cat([target[b, :len(objs)], target[b, -1:]]) / tt
            out.append(Grounding(logits.softmax(-1).numpy(), (dest[b] / td).softmax(-1).numpy()))
        return out


class Grounder:
    """Load once, then ground(text, objects) per turn.

    `path`: one weight file; a list of weight files, a deep ensemble
    (average_groundings) whose averages are re-tempered by `temperature` (target, destination); or an ensemble file
    (.json, read_manifest) naming its members and the temperatures fitted for it (default: default_model_path(), the
    committed ensemble file). A one-member list is that model,
    exactly. Attributes config, encoder_kind, net, encoder, temperature are the first member's (the only one's for
    a single model)."""

    def __init__(self, path: str | Path | list | tuple | None = None, temperature: tuple[float, float] = (1.0, 1.0)):
        if path is None or path == "":
            path = default_model_path()
        if isinstance(path, (list, tuple)):
            paths = [Path(p) for p in path]
        elif Path(path).suffix == ".json":
            paths, temperature = read_manifest(Path(path))
        else:
            paths = [Path(path)]
        if not paths:
            raise KobaError("a grounding ensemble needs at least one model file")
        if len({p.resolve() for p in paths}) != len(paths):
            raise KobaError(f"the same grounding model is named twice in {[str(p) for p in paths]}")
        if not all(0 < t < math.inf for t in temperature):  # an infinite one makes every object equally likely
            raise KobaError(f"ensemble temperatures must be finite and positive, got {temperature}")
        # Members reading MiniLM share one encoder and its per-text cache: the text is encoded once per turn.
        minilm = cache(MiniLMEncoder)
        self.members = [Member(p, minilm) for p in paths]
        first = self.members[0]
        self.config, self.encoder_kind, self.appearance_dim = first.config, first.encoder_kind, first.appearance_dim
        self.net, self.encoder, self.temperature = first.net, first.encoder, first.temperature
        self.ensemble_temperature = (float(temperature[0]), float(temperature[1]))
        if len(self.members) > 1:
            self.encoder_kind = "+".join(m.encoder_kind for m in self.members)
            for m in self.members:   # the catalog texts too: read once by the shared encoder, not once per member
                if m.net.catalog is not None and m.net.text_encoder is None:
                    m.net.set_catalog(catalog_phrases(load_catalog(), m.net.catalog.entries), m.encoder)

    def ground_batch(self, texts: list[str], object_lists: list[list[PerceivedObject]]) -> list[Grounding]:
        texts = [t if t.strip() else "." for t in texts]   # an empty text still needs one token
        if len(self.members) == 1 and self.ensemble_temperature == (1.0, 1.0):
            return self.members[0].ground_batch(texts, object_lists)   # the single model, exactly
        # The frozen MiniLM states and the object features are the same for every member that reads them:
        # build them once, so an ensemble only runs its small heads once per member.
        shared, per_member = {}, []
        for m in self.members:
            # (a crop model's object features are its own encoder's: shared only with itself)
            key = (id(m.encoder), m.appearance_dim, id(m.net.crop_encoder)) if m.encoder is not None else None
            if key is not None and key not in shared:
                shared[key] = batch_inputs(texts, object_lists, m.encoder, m.net, m.appearance_dim)
            per_member.append(m.ground_batch(texts, object_lists, shared.get(key)))
        tt, td = self.ensemble_temperature
        out = []
        for groundings in zip(*per_member, strict=True):
            g = average_groundings(list(groundings))
            if (tt, td) != (1.0, 1.0):
                g = Grounding(retemper(g.target_probs, tt), retemper(g.dest_probs, td))
            out.append(g)
        return out

    def ground(self, text: str, objects: list[PerceivedObject]) -> Grounding:
        return self.ground_batch([text], [objects])[0]
