"""Start a run from another run's weights: `init_from: DIR` in a `koba lm train` config.

Fine-tuning on a new text, continued pre-training, and training on after `koba lm expand` all start like this: step 0,
a fresh optimizer and the run's own schedule; only the weights come from the source checkpoint (a run folder, its
checkpoint/ folder, or a folder `koba lm expand` wrote).

The source fixes what its weights mean, so the run takes the source's model config and tokenizer. A config may still
name them, and then they must agree with the source: a model field that changes the function the weights compute
(norm, positions, sizes, init, ...) or another tokenizer is refused in one line. Fields that only change training
(dropout, loss_chunk) or inference (shape_inference_shift) may differ. A run that already has its own checkpoint
resumes from it and does not read `init_from` again, so an interrupted fine-tuning run continues where it stopped.
"""
from __future__ import annotations

from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import check_compatible, checkpoint_folder, load_checkpoint, recorded_config
from koba_ros.nlp.config import TransformerConfig

FREE_MODEL_FIELDS = ("dropout", "loss_chunk", "shape_inference_shift", "turnover_p", "turnover_seed")
TOKENIZER_FIELDS = {"tokenizer": "byte", "vocab": "", "merges": ""}


def merge_source(data: dict) -> dict:
    """The raw train config `data` with the model and tokenizer of its `init_from` source filled in; a field the
    config names must agree with the source (see the module docstring). Without init_from, `data` unchanged."""
    if not data.get("init_from"):
        return data
    source = recorded_config(data["init_from"])
    given = data.get("model") or {}
    check_agrees(data["init_from"], given, source["model"])
    merged = {**data, "model": {**source["model"], **given}}
    for key, default in TOKENIZER_FIELDS.items():
        source_value = source.get(key, default)
        if key in data and data[key] != source_value:
            raise KobaError(f"init_from {data['init_from']}: {key} is {data[key]!r} here but {source_value!r} in "
                            "the source; its weights only fit the source's tokenizer")
        merged[key] = source_value
    return merged


def check_agrees(init_from, given: dict, source_model: dict) -> None:
    """Raise unless every function-defining model field in `given` has the source's value (defaults filled in)."""
    source = TransformerConfig.from_dict(source_model).to_dict()
    for key, value in given.items():
        if key not in FREE_MODEL_FIELDS and key in source and value != source[key]:
            raise KobaError(f"init_from {init_from}: model {key} is {value!r} here but {source[key]!r} in the "
                            "source's weights; leave it out of the config to take the source's")


def read_weights(model_config: TransformerConfig, model, init_from: str | Path) -> dict:
    """The source's weights, checked against this run's model config (function-defining fields) and its tensors."""
    check_agrees(init_from, model_config.to_dict(), recorded_config(init_from)["model"])
    folder = checkpoint_folder(init_from)
    state, _, _ = load_checkpoint(folder)
    check_compatible(model, state, folder)
    return state
