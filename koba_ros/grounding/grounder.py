"""Grounder: a trained GroundingNet + its text encoder, answering one instruction about one scene.

`Grounding` is what every grounder returns (the symbolic baseline too): a distribution over the
perceived objects plus "none of them", and over the four boxes plus "not said".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from koba_ros.errors import KobaError
from koba_ros.grounding.features import BASE_DIM, PAIR_DIM, object_features, pair_features
from koba_ros.grounding.model import GroundingNet
from koba_ros.grounding.text_encoders import ByteTransformerEncoder, MiniLMEncoder
from koba_ros.paths import models_dir
from koba_ros.perception.objects import PerceivedObject
from koba_ros.sim.catalog import BOXES

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
    return models_dir() / "grounding" / "grounding.pt"


def scene_tensors(objects: list[PerceivedObject], appearance_dim: int, cache: dict | None = None):
    """Object and pair features of one scene (text-independent), memoised in `cache` by the list's identity."""
    key = id(objects)
    if cache is not None and key in cache and cache[key][0] is objects:
        return cache[key][1]
    feats = (torch.from_numpy(object_features(objects, appearance_dim)), torch.from_numpy(pair_features(objects)))
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
    objects = torch.zeros(len(texts), n, BASE_DIM + appearance_dim)
    pairs = torch.zeros(len(texts), n, n, PAIR_DIM)
    obj_mask = torch.zeros(len(texts), n, dtype=torch.bool)
    for b, objs in enumerate(object_lists):
        k = len(objs)
        if k:
            objects[b, :k], pairs[b, :k, :k] = scene_tensors(objs, appearance_dim, cache)
            obj_mask[b, :k] = True
    return states, mask, objects, pairs, obj_mask


class Grounder:
    """Load once, then ground(text, objects) per turn."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path else default_model_path()
        if not path.is_file():
            raise KobaError(f"grounding model {path} not found; train it with `koba train grounding`")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            cfg = ckpt["config"]
        except Exception as exc:  # torch raises many types for a corrupt or foreign file
            raise KobaError(f"cannot read grounding model {path}: {exc}") from None
        self.config = cfg
        self.encoder_kind = cfg["encoder"]
        self.appearance_dim = int(cfg["appearance_dim"])
        self.temperature = (float(cfg.get("t_target", 1.0)), float(cfg.get("t_dest", 1.0)))
        if self.encoder_kind == "minilm":
            self.encoder, text_module, text_dim = MiniLMEncoder(), None, MiniLMEncoder.dim
        else:
            text_module = ByteTransformerEncoder(**cfg.get("byte", {}))
            self.encoder, text_dim = None, text_module.dim
        self.net = GroundingNet(text_dim, self.appearance_dim, cfg["hidden"], text_module)
        self.net.load_state_dict(ckpt["state_dict"])
        self.net.eval()

    @torch.no_grad()
    def ground_batch(self, texts: list[str], object_lists: list[list[PerceivedObject]]) -> list[Grounding]:
        texts = [t if t.strip() else "." for t in texts]   # an empty text still needs one token
        inputs = batch_inputs(texts, object_lists, self.encoder, self.net, self.appearance_dim)
        target, dest, _ = self.net(*inputs)
        tt, td = self.temperature
        out = []
        for b, objs in enumerate(object_lists):
            logits = torch.cat([target[b, :len(objs)], target[b, -1:]]) / tt
            out.append(Grounding(logits.softmax(-1).numpy(), (dest[b] / td).softmax(-1).numpy()))
        return out

    def ground(self, text: str, objects: list[PerceivedObject]) -> Grounding:
        return self.ground_batch([text], [objects])[0]
