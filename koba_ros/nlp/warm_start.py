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
from koba_ros.nlp.checkpoint import check_compatible, checkpoint_folder, load_model_state, recorded_config
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
    different = tokenizer_difference(data, source)
    if different:
        key, value, source_value = different
        raise KobaError(f"init_from {data['init_from']}: {key} is {value!r} here but {source_value!r} in "
                        "the source; its weights only fit the source's tokenizer")
    merged.update({key: source.get(key, default) for key, default in TOKENIZER_FIELDS.items()})
    return merged


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


def read_weights(model_config: TransformerConfig, model, init_from: str | Path) -> dict:
    """The source's weights, checked against this run's model config (function-defining fields) and its tensors."""
    check_agrees(init_from, model_config.to_dict(), recorded_config(init_from)["model"])
    folder = checkpoint_folder(init_from)
    state = load_model_state(folder)  # the weights only: the source's optimizer state is not used
    check_compatible(model, state, folder)
    return state
