"""Start a run from another run's weights: `init_from: DIR` in a `koba lm train` config.

Fine-tuning on a new text, continued pre-training, and training on after `koba lm expand` all start like this: step 0,
a fresh optimizer and the run's own schedule; only the weights come from the source checkpoint (a run folder, its
checkpoint/ folder, or a folder `koba lm expand` wrote).

The source fixes what its weights mean, so the run takes the source's model config and tokenizer. A config may still
name them, and then they must agree with the source: a model field that changes the function the weights compute
(norm, positions, sizes, init, ...) or another tokenizer is refused in one line. Fields that only change training
(dropout, loss_chunk, turnover_p) or inference (shape_inference_shift) may differ, and so may a RoPE model's context
fields (max_len, rope_theta, rope_scaling and its rope_* settings), which no weight holds: a YaRN or
position-interpolation fine-tune extends the context so (a notice names them). A run that already has its own checkpoint
resumes from it and does not read `init_from` again, so an interrupted fine-tuning run continues where it stopped
(its model and tokenizer then come from its own checkpoint, and the source may have moved; LoRA still reads the
source: its checkpoint's base weights are checked against it). The source's recorded tokenizer digest must match
the tokenizer files the run reads; given by another path (another spelling, or a copy), they are taken when their
digest is the source's.

A source trained with turn-over dropout (turnover_p > 0) has its documents' masks in its weights: the run records it
(TURNOVER_KEY in state.json), and `koba lm influence` refuses the run (lm_influence.load_runs); `koba lm expand` and
`koba lm gqa` carry the record into the folder they write (derived_record).
"""
from __future__ import annotations

import json
import sys
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
from koba_ros.nlp.tokenizer import build_tokenizer, older_digest_note, same_tokenizer

FREE_MODEL_FIELDS = ("dropout", "loss_chunk", "shape_inference_shift", "turnover_p", "turnover_seed")
# What a RoPE model's positions are, held by no weight (the frequencies are computed buffers): init_from may change
# them, to extend the context (YaRN, position interpolation, a larger base).
ROPE_CONTEXT_FIELDS = ("max_len", "rope_theta", "rope_scaling", "rope_factor", "rope_low_freq_factor",
                       "rope_high_freq_factor", "rope_original_max_len", "rope_beta_fast", "rope_beta_slow",
                       "rope_attention_factor", "rope_truncate", "rope_short_factor", "rope_long_factor")
TOKENIZER_FIELDS = {"tokenizer": "byte", "vocab": "", "merges": ""}
TURNOVER_KEY = "init_turnover"  # state.json: the runs whose turn-over masks trained the weights init_from gave


def merge_source(data: dict, own_checkpoint: Path | None = None) -> dict:
    """The raw train config `data` with the model and tokenizer of its `init_from` source filled in; a field the
    config names must agree with the source (see the module docstring). Without init_from, `data` unchanged.
    `own_checkpoint`: the run's own checkpoint folder when it will resume from it and needs no base weights (no
    LoRA); if it holds a complete checkpoint, its recorded config is the source, and init_from is not read (it may
    have moved)."""
    if not data.get("init_from"):
        return data
    source = own_recorded_config(own_checkpoint) if own_checkpoint is not None else None
    folder = own_checkpoint
    if source is None:
        source, folder = recorded_config(data["init_from"]), checkpoint_folder(data["init_from"])
    given = data.get("model") or {}
    check_agrees(data["init_from"], given, source["model"])
    merged = {**data, "model": {**source["model"], **given}}
    different = tokenizer_difference(data, source, lambda: same_tokenizer_files(data, source, folder))
    if different:
        key, value, source_value = different
        raise KobaError(f"init_from {data['init_from']}: {key} is {value!r} here but {source_value!r} in "
                        "the source; its weights only fit the source's tokenizer")
    # the config's own paths where it names them: the same tokenizer, and they stay where the config says
    merged.update({key: data.get(key, source.get(key, default)) for key, default in TOKENIZER_FIELDS.items()})
    return merged


def same_tokenizer_files(given: dict, source: dict, folder: Path) -> bool:
    """Do the tokenizer files the train config `given` names (the source's where it names none) make the tokenizer
    whose digest the checkpoint `folder` records? False where it records none: nothing then shows they are the same."""
    saved = source_tokenizer_digest(folder)
    if saved is None:
        return False
    kind, vocab, merges = (given.get(key, source.get(key, default)) for key, default in TOKENIZER_FIELDS.items())
    try:
        tokenizer = build_tokenizer(kind, vocab, merges)
    except KobaError:  # files that are not there: the path difference is the refusal
        return False
    return same_tokenizer(tokenizer, saved, folder / "tokenizer.json")


def own_recorded_config(folder: Path) -> dict | None:
    """The config a run's own complete checkpoint records as written (paths as the run used them), or None when
    there is no complete checkpoint there: the resume will then refuse it or start from init_from."""
    if not ((folder / "model.safetensors").is_file() and (folder / "state.json").is_file()):
        return None
    meta = _state(folder)  # None: the resume's own read reports the damage
    config = meta.get("config") if meta else None
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)):
        return None
    _check_recorded_values(config, folder)  # as a source's: a damaged value is one line, not a TypeError later
    return config


def tokenizer_difference(given: dict, source: dict, same_files=None) -> tuple[str, object, object] | None:
    """(field, given value, source value) of the first tokenizer field (TOKENIZER_FIELDS) that `given` names with
    another value than the train config `source` records (defaults filled in), or None. `same_files()`, asked only
    when a vocab or merges path differs: do the files given make the recorded tokenizer (its digest)? Then they are
    another path to the same files, or a copy of them, and no difference."""
    for key, default in TOKENIZER_FIELDS.items():
        if key in given and not same_setting(key, given[key], source.get(key, default)):
            if key != "tokenizer" and same_files is not None and same_files():
                return None
            return key, given[key], source.get(key, default)
    return None


def same_setting(key: str, value, recorded) -> bool:
    """A tokenizer field's value and a recorded one are the same: equal, or for vocab and merges two spellings of one
    path (`tok/../tok/vocab.json`, relative and absolute), resolved from the current folder."""
    if value == recorded:
        return True
    if key == "tokenizer" or not (isinstance(value, str) and isinstance(recorded, str) and value and recorded):
        return False
    return Path(value).resolve() == Path(recorded).resolve()


def model_difference(given: dict, source_model: dict, free: tuple[str, ...] = FREE_MODEL_FIELDS
                     ) -> tuple[str, object, object] | None:
    """(field, given value, source value) of the first function-defining model field in `given` whose value differs
    from the model config `source_model` (defaults filled in), or None; the `free` fields may differ."""
    source = TransformerConfig.from_dict(source_model).to_dict()
    for key, value in given.items():
        if key not in free and key in source and value != source[key]:
            return key, value, source[key]
    return None


def context_changes(given: dict, source_model: dict) -> list[str]:
    """The RoPE context fields (ROPE_CONTEXT_FIELDS) `given` changes from a RoPE source, as `key old -> new`."""
    source = TransformerConfig.from_dict(source_model).to_dict()
    if source["positions"] != "rope":
        return []
    return [f"{key} {source[key]!r} -> {given[key]!r}" for key in ROPE_CONTEXT_FIELDS
            if key in given and given[key] != source[key]]


def check_agrees(init_from, given: dict, source_model: dict) -> None:
    """Raise unless every function-defining model field in `given` has the source's value (defaults filled in); a
    RoPE source's context fields may differ."""
    rope = TransformerConfig.from_dict(source_model).positions == "rope"
    different = model_difference(given, source_model, FREE_MODEL_FIELDS + (ROPE_CONTEXT_FIELDS if rope else ()))
    if different:
        key, value, source_value = different
        raise KobaError(f"init_from {init_from}: model {key} is {value!r} here but {source_value!r} in the "
                        "source's config, which its weights were trained for; leave it out of the config to take the "
                        "source's")


def read_weights(model_config: TransformerConfig, model, init_from: str | Path, tokenizer=None,
                 resuming: bool = False) -> dict:
    """The source's weights, checked against this run's model config (function-defining fields) and its tensors,
    and `tokenizer`'s digest (this run's tokenizer files) against the one the source recorded: the same tokenizer
    names and paths may hold another vocabulary by now, which the weights do not fit. A changed RoPE context is
    named in a notice on stderr when the run starts; not again when it is `resuming` (LoRA reads its base weights
    again at each resume)."""
    source_model = recorded_config(init_from)["model"]
    check_agrees(init_from, model_config.to_dict(), source_model)
    folder = checkpoint_folder(init_from)
    saved_digest = source_tokenizer_digest(folder)
    if not same_tokenizer(tokenizer, saved_digest, folder / "tokenizer.json"):
        raise KobaError(f"init_from {init_from}: the tokenizer's files (digest) are {tokenizer.digest!r} here but "
                        f"{saved_digest!r} in the source{older_digest_note(tokenizer, saved_digest)}; its weights "
                        "only fit the source's tokenizer")
    state = load_model_state(folder)  # the weights only: the source's optimizer state is not used
    check_compatible(model, state, folder)
    if not resuming and (changes := context_changes(model_config.to_dict(), source_model)):
        print(f"koba lm train: init_from {init_from}: the RoPE context differs from the source's ({', '.join(changes)}"
              "); no weight holds it, so the weights are the source's and see positions the new way",
              file=sys.stderr, flush=True)
    return state


def source_tokenizer_digest(folder: Path) -> str | None:
    """The tokenizer digest a checkpoint folder's state.json records, or None (none recorded: byte, or old)."""
    meta = _state(folder)  # None: recorded_config has read it already and reported any damage
    digest = meta.get("tokenizer_digest") if meta else None
    return digest if isinstance(digest, str) else None


def _state(folder: Path) -> dict | None:
    """A checkpoint folder's state.json as a dict, or None where it cannot be read."""
    try:
        meta = json.loads((folder / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def turnover_ancestors(init_from: str | Path, _seen: frozenset = frozenset()) -> list[dict] | None:
    """The runs whose turn-over masks (turnover_p > 0) trained the weights `init_from` holds, oldest first, each
    {"run": path, "turnover_seed": seed}: those before it (weights_turnover), then the source itself if it trained
    so (at step 0, as `koba lm expand` and `koba lm gqa` write, it trained nothing: its turnover_p is its source's).
    None where the source cannot be read (unknown)."""
    folder = checkpoint_folder(init_from)
    meta = _state(folder)
    config = meta.get("config") if meta else None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        return None
    before = weights_turnover(folder, meta, _seen | {folder.resolve()})
    if before is None:
        return None
    model = config["model"]
    p = model.get("turnover_p", 0)
    if isinstance(p, int | float) and not isinstance(p, bool) and p > 0 and meta.get("step") != 0:
        before = [*before, {"run": str(init_from), "turnover_seed": model.get("turnover_seed", 0)}]
    return before


def weights_turnover(folder: Path, meta: dict | None = None, _seen: frozenset = frozenset()) -> list[dict] | None:
    """The turn-over runs that trained the weights checkpoint `folder` started from (turnover_ancestors of its
    init_from): what its state.json records (TURNOVER_KEY, written since session 29), or, for an older checkpoint,
    read from its init_from source now. [] without init_from; None where it is not known (a moved source)."""
    meta = _state(folder) if meta is None else meta
    if meta is None:
        return None
    recorded = meta.get(TURNOVER_KEY)
    if isinstance(recorded, list) and all(isinstance(item, dict) for item in recorded):
        return recorded
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    init_from = config.get("init_from")
    if not init_from or not isinstance(init_from, str):
        return []
    if checkpoint_folder(init_from).resolve() in _seen:  # a loop of hand-made folders: not known
        return None
    return turnover_ancestors(init_from, _seen)


def derived_record(checkpoint: str | Path) -> dict:
    """What a checkpoint written from `checkpoint`'s weights without training (`koba lm expand`, `koba lm gqa`) records
    of them in its state.json, as a fine-tune would: the tokenizer digest init_from checks, and the turn-over runs
    that trained them (TURNOVER_KEY: turnover_ancestors, so `koba lm influence` refuses it and its fine-tunes as a
    fine-tune of the source; left out where not known, as a run leaves it)."""
    digest = source_tokenizer_digest(checkpoint_folder(checkpoint))
    lineage = turnover_ancestors(checkpoint)
    return {**({"tokenizer_digest": digest} if digest else {}),
            **({TURNOVER_KEY: lineage} if lineage is not None else {})}
