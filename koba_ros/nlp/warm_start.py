"""Start a run from another run's weights: `init_from: DIR` in a `koba lm train` config.

Fine-tuning on a new text, continued pre-training, and training on after `koba lm expand` all start like this: step 0,
a fresh optimizer and the run's own schedule; only the weights come from the source checkpoint (a run folder, its
checkpoint/ folder, or a folder `koba lm expand` wrote).

The source fixes what its weights mean, so the run takes the source's model config and tokenizer. A config may still
name them, and then they must agree with the source: a model field that changes the function the weights compute
(norm, positions, sizes, init, ...) or another tokenizer is refused in one line. Fields that only change training
(dropout, loss_chunk) or inference (shape_inference_shift) may differ. A run that already has its own checkpoint
resumes from it and does not read `init_from` again, so an interrupted fine-tuning run continues where it stopped
(its model and tokenizer then come from its own checkpoint, and the source may have moved; LoRA still reads the
source: its checkpoint's base weights are checked against it). The source's recorded tokenizer digest must match
the tokenizer files the run reads.
"""
from __future__ import annotations

import json
from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import (
    _check_recorded_values,
    check_compatible,
    checkpoint_folder,
    load_model_state,
    recorded_config,
)
from koba_ros.nlp.config import TransformerConfig

FREE_MODEL_FIELDS = ("dropout", "loss_chunk", "shape_inference_shift", "turnover_p", "turnover_seed")
TOKENIZER_FIELDS = {"tokenizer": "byte", "vocab": "", "merges": ""}


def merge_source(data: dict, own_checkpoint: Path | None = None) -> dict:
    """The raw train config `data` with the model and tokenizer of its `init_from` source filled in; a field the
    config names must agree with the source (see the module docstring). Without init_from, `data` unchanged.
    `own_checkpoint`: the run's own checkpoint folder when it will resume from it and needs no base weights (no
    LoRA); if it holds a complete checkpoint, its recorded config is the source, and init_from is not read (it may
    have moved)."""
    if not data.get("init_from"):
        return data
    source = own_recorded_config(own_checkpoint) if own_checkpoint is not None else None
    if source is None:
        source = recorded_config(data["init_from"])
    given = data.get("model") or {}
    check_agrees(data["init_from"], given, source["model"])
    merged = {**data, "model": {**source["model"], **given}}
    different = tokenizer_difference(data, source)
    if different:
        key, value, source_value = different
        raise KobaError(f"init_from {data['init_from']}: {key} is {value!r} here but {source_value!r} in "
                        "the source; its weights only fit the source's tokenizer")
    merged.update({key: source.get(key, default) for key, default in TOKENIZER_FIELDS.items()})
    return merged


def own_recorded_config(folder: Path) -> dict | None:
    """The config a run's own complete checkpoint records as written (paths as the run used them), or None when
    there is no complete checkpoint there: the resume will then refuse it or start from init_from."""
    if not ((folder / "model.safetensors").is_file() and (folder / "state.json").is_file()):
        return None
    try:
        meta = json.loads((folder / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the resume's own read reports the damage
    config = meta.get("config") if isinstance(meta, dict) else None
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)):
        return None
    _check_recorded_values(config, folder)  # as a source's: a damaged value is one line, not a TypeError later
    return config


def tokenizer_difference(given: dict, source: dict) -> tuple[str, object, object] | None:
    """(field, given value, source value) of the first tokenizer field (TOKENIZER_FIELDS) that `given` names with
    another value than the train config `source` records (defaults filled in), or None."""
    for key, default in TOKENIZER_FIELDS.items():
        if key in given and given[key] != source.get(key, default):
            return key, given[key], source.get(key, default)
    return None


def model_difference(given: dict, source_model: dict) -> tuple[str, object, object] | None:
    """(field, given value, source value) of the first function-defining model field in `given` whose value differs
    from the model config `source_model` (defaults filled in), or None; FREE_MODEL_FIELDS may differ."""
    source = TransformerConfig.from_dict(source_model).to_dict()
    for key, value in given.items():
        if key not in FREE_MODEL_FIELDS and key in source and value != source[key]:
            return key, value, source[key]
    return None


def check_agrees(init_from, given: dict, source_model: dict) -> None:
    """Raise unless every function-defining model field in `given` has the source's value (defaults filled in)."""
    different = model_difference(given, source_model)
    if different:
        key, value, source_value = different
        raise KobaError(f"init_from {init_from}: model {key} is {value!r} here but {source_value!r} in the "
                        "source's weights; leave it out of the config to take the source's")


def read_weights(model_config: TransformerConfig, model, init_from: str | Path, tokenizer_digest: str | None = None
                 ) -> dict:
    """The source's weights, checked against this run's model config (function-defining fields) and its tensors,
    and `tokenizer_digest` (this run's tokenizer files) against the one the source recorded: the same tokenizer
    names and paths may hold another vocabulary by now, which the weights do not fit."""
    check_agrees(init_from, model_config.to_dict(), recorded_config(init_from)["model"])
    folder = checkpoint_folder(init_from)
    saved_digest = source_tokenizer_digest(folder)
    if tokenizer_digest and saved_digest and tokenizer_digest != saved_digest:
        raise KobaError(f"init_from {init_from}: the tokenizer's files (digest) are {tokenizer_digest!r} here but "
                        f"{saved_digest!r} in the source; its weights only fit the source's tokenizer")
    state = load_model_state(folder)  # the weights only: the source's optimizer state is not used
    check_compatible(model, state, folder)
    return state


def source_tokenizer_digest(folder: Path) -> str | None:
    """The tokenizer digest a checkpoint folder's state.json records, or None (none recorded: byte, or old)."""
    try:
        meta = json.loads((folder / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # recorded_config has read it already; a checkpoint without one has no digest to compare
    digest = meta.get("tokenizer_digest") if isinstance(meta, dict) else None
    return digest if isinstance(digest, str) else None
