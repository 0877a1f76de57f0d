"""Checkpoints as a folder: model.safetensors, optimizer.safetensors, state.json; written atomically.

safetensors holds tensors only, so loading can never run code; `.pt` files are read with weights_only=True.
A foreign or corrupt checkpoint gives a one-line KobaError and leaves the model untouched.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from koba_ros.errors import KobaError, reason
from koba_ros.nlp.tokenizer import model_files_record, tokenizer_config_object


def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for pid, entry in state.get("state", {}).items():
        for key, value in entry.items():
            name = f"state/{pid}/{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().contiguous().clone().cpu()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


OPTIMIZER_ENTRY = re.compile(r"state/([^/]+)/([^/]+)")  # state/<parameter name or number>/<key>


def _unflatten_optimizer(tensors: dict, meta: dict, directory: Path) -> dict:
    """The optimizer state from optimizer.safetensors and state.json's "optimizer" entry; a damaged one (names not
    state/<parameter>/<key>, state.json's entry not {"param_groups": [...], "scalars": {...}}) is refused."""
    scalars, groups = meta.get("scalars", {}), meta.get("param_groups", [])
    if not isinstance(scalars, dict) or not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise KobaError(f"checkpoint {directory}: state.json's optimizer entry is damaged (param_groups must be a "
                        "list of objects, scalars an object)")
    state: dict = {}
    for name, value in list(tensors.items()) + list(scalars.items()):
        match = OPTIMIZER_ENTRY.fullmatch(name)
        if match is None:
            raise KobaError(f"checkpoint {directory}: optimizer.safetensors holds {name!r}, not an optimizer state "
                            "entry (state/<parameter>/<key>); foreign or damaged")
        pid, key = match.groups()
        state.setdefault(int(pid) if pid.isdigit() else pid, {})[key] = value
    return {"state": state, "param_groups": groups}


# An imported model's own tokenizer travels with its weights (`koba lm import`, tokenizer: hf), with its special
# tokens and chat template (transformers 5 saves the template as chat_template.jinja), which export hands back.
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "chat_template.jinja"})
CHECKPOINT_FILES = frozenset({"model.safetensors", "optimizer.safetensors", "lora.safetensors", "state.json"}
                             | TOKENIZER_FILES)


def is_replaceable(directory: Path) -> bool:
    """May a checkpoint be written over `directory`? Only if it is absent, an empty folder or a checkpoint folder:
    never a file or a folder holding anything else (a user's runs, notes)."""
    if not directory.exists():
        return True
    if not directory.is_dir():
        return False
    names = {p.name for p in directory.iterdir()}
    return not names or names <= CHECKPOINT_FILES


def save_checkpoint(directory: str | Path, model_state: dict, optim_state: dict | None, meta: dict,
                    adapters: dict | None = None, tokenizer_files: dict[str, Path | dict] | None = None) -> Path:
    """Writes a new folder beside <dir> then swaps it in, so a crash never leaves a half-written checkpoint. The
    temporary names are unique (no folder of the user's is ever deleted), and a file or a folder that is not a
    checkpoint is refused. `adapters`: a LoRA run's A and B (lora.safetensors; model_state holds the merged
    weights). `tokenizer_files`: name (of TOKENIZER_FILES) -> file to copy in, or JSON object to write
    (hf_tokenizer_files); by default, for a run whose recorded config uses an `hf` tokenizer, its tokenizer.json and
    the other TOKENIZER_FILES beside it, so that every checkpoint of such a run carries the tokenizer its ids need
    (recorded_config then points at the copy)."""
    if tokenizer_files is None:
        tokenizer_files = own_tokenizer_files(meta.get("config"))
    directory = Path(directory)
    if not is_replaceable(directory):
        raise KobaError(f"{directory} exists and is not a checkpoint folder; give another output path")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.writing-", dir=directory.parent))
    except OSError as exc:
        raise KobaError(f"cannot write a checkpoint to {directory}: {exc.strerror or exc}") from None
    old, swapped = None, False
    try:
        save_file({k: v.detach().contiguous().clone().cpu() for k, v in model_state.items()},
                  tmp / "model.safetensors")
        opt_meta = {}
        if optim_state is not None:
            tensors, opt_meta = _flatten_optimizer(optim_state)
            save_file(tensors, tmp / "optimizer.safetensors")
        if adapters:
            save_file({k: v.detach().contiguous().clone().cpu() for k, v in adapters.items()},
                      tmp / "lora.safetensors")
        write_tokenizer_files(tokenizer_files or {}, tmp)
        (tmp / "state.json").write_text(json.dumps({**meta, "optimizer": opt_meta}, indent=1))
        with _signals_blocked():  # a Ctrl-C between the two renames would leave no checkpoint/ at all
            if directory.exists():  # moved aside under a unique name of our own, deleted once the new one is in place
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.replaced-", dir=directory.parent))
                os.replace(directory, old)
            os.replace(tmp, directory)
            swapped = True
    except BaseException as exc:  # a full disk, Ctrl-C, ...: no half-written folder left behind, the old one back
        if not swapped:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and old.exists():
                if directory.exists():
                    shutil.rmtree(old, ignore_errors=True)  # still the empty folder mkdtemp made
                else:
                    os.replace(old, directory)
            if isinstance(exc, (OSError, SafetensorError)):
                reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                          else (str(exc).splitlines() or [type(exc).__name__])[0])
                raise KobaError(f"cannot write a checkpoint to {directory}: {reason}") from None
        raise
    finally:
        if swapped and old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return directory


@contextlib.contextmanager
def _signals_blocked():
    """SIGINT and SIGTERM held back (delivered on leaving) in the main thread; elsewhere none arrive anyway."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def recover_interrupted_swap(directory: str | Path) -> None:
    """Put back the checkpoint save_checkpoint had moved aside (.<name>.replaced-*) when `directory` is missing: a
    save stopped between its two renames. Several such folders cannot be told apart: refused."""
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        return
    aside = sorted(p for p in directory.parent.glob(f".{directory.name}.replaced-*")
                   if p.is_dir() and (p / "model.safetensors").is_file())
    if len(aside) > 1:
        raise KobaError(f"{directory} is missing and {len(aside)} earlier checkpoints lie beside it "
                        f"({', '.join(p.name for p in aside)}); rename the right one to {directory.name}")
    if aside:
        try:
            os.replace(aside[0], directory)
        except OSError as exc:
            raise KobaError(f"cannot put back the checkpoint {aside[0]} as {directory}: {exc.strerror or exc}") \
                from None


def load_model_state(path: str | Path) -> dict:
    """Model tensors from a checkpoint folder, a .safetensors file, or a .pt state dict (weights_only)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise KobaError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise KobaError(f"checkpoint {path} is an empty file (corrupt or not a weights file)")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and the unpickler raise many unrelated types for a bad file
        raise KobaError(f"checkpoint {path} is corrupt or not a weights file: {reason(exc, 120)}") from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise KobaError(f"checkpoint {path} is not a state dict of tensors")
    return state


def _kind(tensor: torch.Tensor) -> str:
    """A tensor's kind of number: load_state_dict converts between kinds without a word (int64 or bool weights
    become whole-number floats, float codes are truncated), so only the precision may differ (fp32 vs bf16)."""
    return ("floating" if tensor.is_floating_point() else "complex" if tensor.is_complex()
            else "bool" if tensor.dtype == torch.bool else "integer")


def check_compatible(model: torch.nn.Module, state: dict, path) -> None:
    """Raise (before touching the model) unless `state` has exactly the model's tensors, shapes and kinds of number
    (floating weights, ALONE's integer word_codes)."""
    model_state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in model_state.items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    kinds = sorted(k for k in set(expected) & set(got) if _kind(model_state[k]) != _kind(state[k]))
    if missing or unexpected or wrong or kinds:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape of {wrong[0]} is {got[wrong[0]]}, model has {expected[wrong[0]]}" if wrong
                  else f"{kinds[0]} holds {state[kinds[0]].dtype} ({_kind(state[kinds[0]])}), the model's is "
                       f"{model_state[kinds[0]].dtype} ({_kind(model_state[kinds[0]])})")
        raise KobaError(f"checkpoint {path} does not fit this model (foreign checkpoint?): {detail}")


def checkpoint_folder(path: str | Path) -> Path:
    """The checkpoint folder of a `koba lm train` run folder, or `path` itself (already a checkpoint folder)."""
    path = Path(path)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def hf_tokenizer_files(tokenizer_json: Path) -> dict[str, Path | dict]:
    """A tokenizer.json and the other TOKENIZER_FILES beside it, where they exist: name -> file to copy, or, for a
    tokenizer_config.json that must record what the tokenizer took from its model's files (model_files_record: the
    eos, the ids a sample stops at), the JSON object to write. The stop ids are recorded there rather than by
    carrying generation_config.json: config.json's list would need recording anyway, and the rest of that file
    (temperature, top_p) is the model's, which `sample` does not read and export writes anew."""
    files = {name: tokenizer_json.parent / name for name in TOKENIZER_FILES} | {"tokenizer.json": tokenizer_json}
    files = {name: path for name, path in files.items() if path.is_file()}
    record = model_files_record(tokenizer_json)
    if record:
        files["tokenizer_config.json"] = {**tokenizer_config_object(files.get("tokenizer_config.json")), **record}
    return files


def write_tokenizer_files(files: dict[str, Path | dict], folder: Path) -> None:
    """hf_tokenizer_files' files into `folder`: each copied, or written where it is a JSON object."""
    for name, source in files.items():
        if name not in TOKENIZER_FILES:
            raise ValueError(f"not a tokenizer file name: {name}")
        if isinstance(source, dict):
            (folder / name).write_text(json.dumps(source, indent=2, ensure_ascii=False), encoding="utf-8")
        else:
            shutil.copyfile(source, folder / name)


def own_tokenizer_files(config) -> dict[str, Path]:
    """An `hf` run's tokenizer files (none for other tokenizers)."""
    if not isinstance(config, dict) or config.get("tokenizer") != "hf" or not config.get("vocab"):
        return {}
    return hf_tokenizer_files(Path(config["vocab"]))


def recorded_config(path: str | Path) -> dict:
    """The training config a checkpoint records in its state.json: the model its weights belong to and the tokenizer
    that makes their tokens. `path`: a run folder or a checkpoint folder."""
    folder = checkpoint_folder(path)
    if not (folder / "model.safetensors").is_file():
        raise KobaError(f"checkpoint {folder} not found (a run folder or a checkpoint folder with model.safetensors)")
    try:
        meta = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KobaError(f"checkpoint {folder}: state.json is corrupt") from exc
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise KobaError(f"checkpoint {folder} has no training config (state.json); was it written by koba lm train "
                        "or koba lm expand?")
    _check_recorded_values(config, folder)
    if config.get("tokenizer") == "hf" and (folder / "tokenizer.json").is_file():
        config = {**config, "vocab": str((folder / "tokenizer.json").resolve())}  # its own copy: it moves with it
    return config


def _check_recorded_values(config: dict, folder: Path) -> None:
    """The recorded values that sample, eval, expand, gqa, export, lm_influence and init_from read beside the model
    (seq_len, lr, document_mask, the tokenizer's names), each absent or of its type, so a damaged state.json is one
    line here and not a ValueError (int("x")) or a silently wrong default (document_mask "no" is truthy) later."""
    def bad(key: str, wanted: str) -> KobaError:
        return KobaError(f"checkpoint {folder}: state.json's {key} must be {wanted}, got {config[key]!r} (damaged)")

    seq_len = config.get("seq_len")
    if "seq_len" in config and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0):
        raise bad("seq_len", "a positive integer")
    lr = config.get("lr")
    if "lr" in config and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf):
        raise bad("lr", "a finite number > 0")
    if "document_mask" in config and not isinstance(config["document_mask"], bool):
        raise bad("document_mask", "true or false")
    for key in ("tokenizer", "vocab", "merges", "train_data"):
        if key in config and not isinstance(config[key], str):
            raise bad(key, "a string")


def load_checkpoint(directory: str | Path) -> tuple[dict, dict | None, dict]:
    """(model state, optimizer state or None, meta) of a checkpoint folder."""
    directory = Path(directory)
    model_state = load_model_state(directory)
    meta_path = directory / "state.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KobaError(f"checkpoint {directory}: state.json is corrupt") from exc
    if not isinstance(meta, dict):
        raise KobaError(f"checkpoint {directory}: state.json is not a JSON object")
    for key in ("config", "optimizer"):
        if key in meta and not isinstance(meta[key], dict):
            raise KobaError(f"checkpoint {directory}: state.json's {key} is not a JSON object (damaged)")
    step = meta.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise KobaError(f"checkpoint {directory}: state.json's step must be a non-negative integer, got {step!r}")
    optim = None
    if (directory / "optimizer.safetensors").is_file():
        try:
            tensors = load_file(directory / "optimizer.safetensors")
        except SafetensorError as exc:
            raise KobaError(f"checkpoint {directory}: optimizer.safetensors is corrupt") from exc
        optim = _unflatten_optimizer(tensors, meta.get("optimizer", {}), directory)
    return model_state, optim, meta
