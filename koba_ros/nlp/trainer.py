"""Training: `koba lm train --config FILE`, single process or under torchrun.

bf16 autocast on GPU (fp16 with dynamic loss scaling where bf16 is not native: mixed_precision.py), SDPA
attention, optional torch.compile, gradient accumulation and clipping, AdamW with the schedules of schedules.py,
safetensors checkpoints with resume, a tqdm bar, metrics.csv + curves.png + TensorBoard scalars (curves.py), and a
NaN/inf loss stop that keeps the last good checkpoint.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import distributed
from koba_ros.nlp.checkpoint import (
    check_compatible,
    is_replaceable,
    load_checkpoint,
    load_model_state,
    own_tokenizer_files,
    recover_interrupted_swap,
    save_checkpoint,
)
from koba_ros.nlp.config import TransformerConfig, check_types
from koba_ros.nlp.curves import MetricsLog, is_own_logdir, plot_curves, write_tensorboard
from koba_ros.nlp.data import BUILTIN, TokenStream, batch_generator, eos_starts_documents, micro_seed
from koba_ros.nlp.document_mask import documents_of
from koba_ros.nlp.graceful_stop import GracefulStop
from koba_ros.nlp.lora import add_lora, split_state
from koba_ros.nlp.master_weights import MasterWeightAdamW, flat_to_param_state, param_state_to_flat
from koba_ros.nlp.mixed_precision import LossScaler, autocast_dtype, usable_scale
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.prepared import token_stream
from koba_ros.nlp.schedules import SCHEDULES, lr_at
from koba_ros.nlp.tokenizer import base_vocab_size, build_tokenizer, check_ids_fit, older_digest_note, same_tokenizer
from koba_ros.nlp.warm_start import (
    FREE_MODEL_FIELDS,
    TOKENIZER_FIELDS,
    TURNOVER_KEY,
    merge_source,
    model_difference,
    read_weights,
    tokenizer_difference,
    turnover_ancestors,
)

PRECISIONS = ("auto", "bf16", "fp16", "fp32", "bf16_master")
MAX_DIST_TIMEOUT = 1e7  # seconds (115 days): far beyond any real wait, far below timedelta's limit


@dataclass
class TrainConfig:
    model: TransformerConfig = field(default_factory=TransformerConfig)
    train_data: str = BUILTIN        # a text file, a folder (its *.txt) or glob of them, the built-in corpus, or a
    #                                  token file from koba lm prepare (.bin); a collection's files end in eos
    val_data: str = ""               # empty: hold out val_fraction of train_data
    val_fraction: float = 0.05
    init_from: str = ""              # a run or checkpoint folder: start from its weights at step 0 (warm_start.py)
    tokenizer: str = "byte"          # byte | gpt2 (GPT-2's BPE, ranks from openai-whisper) | bpe (vocab.json + merges)
    #                                  | hf (a Hugging Face tokenizer.json, e.g. an imported Llama's)
    vocab: str = ""                  # bpe: vocab.json; gpt2: .tiktoken ranks (empty: whisper's); hf: tokenizer.json
    merges: str = ""                 # bpe: merges.txt
    seq_len: int = 128
    batch_size: int = 16             # per rank, per micro-batch
    grad_accum: int = 1
    steps: int = 200
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 20
    schedule: str = "cosine"
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    clip: float = 1.0
    device: str = "auto"             # auto | cpu | cuda
    precision: str = "auto"          # auto (bf16 autocast on CUDA, fp16 on pre-Ampere GPUs, fp32 on CPU) | fp32
    #                                  | bf16 (autocast on any device) | fp16 (autocast + dynamic loss scaling)
    #                                  | bf16_master (bf16 weights, AdamW on fp32 master weights: master_weights.py)
    loss_scale: float = 0.0          # fp16: 0 = dynamic loss scaling; > 0 = this constant scale (1: none)
    compile: bool = False
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory, +1 forward
    document_mask: bool = False      # tokens attend only within their own document (eos-separated; document_mask.py)
    parallel: str = "ddp"            # ddp | fsdp (only under torchrun)
    dist_timeout: float = 600.0      # seconds a rank waits for the others in a collective before stopping (dead node)
    eval_every: int = 50
    keep_best: bool = False          # also keep the weights of the lowest validation loss in out/best (fine-tuning)
    lora_rank: int = 0               # > 0: LoRA (lora.py) on init_from's frozen weights, adapters of this rank
    lora_alpha: float = 16.0         # LoRA's update scale is lora_alpha / lora_rank
    eval_batches: int = 8
    ckpt_every: int = 100
    seed: int = 0
    out: str = "runs/lm"
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True         # also write the curves as TensorBoard scalars (out/tensorboard)

    def validate(self) -> None:
        for name in ("seq_len", "batch_size", "grad_accum", "steps", "eval_every", "eval_batches", "ckpt_every"):
            if int(getattr(self, name)) <= 0:
                raise KobaError(f"train config: {name} must be positive, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise KobaError(f"train config: schedule must be one of {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or not (0 <= self.min_lr < math.inf):
            raise KobaError(f"train config: lr must be a finite number > 0 and min_lr one >= 0, got {self.lr}, "
                            f"{self.min_lr}")
        if self.min_lr > self.lr:  # the decaying schedules would raise the rate towards min_lr instead
            raise KobaError(f"train config: min_lr {self.min_lr} is above lr {self.lr}; set min_lr <= lr")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise KobaError(f"train config: beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.warmup < 0 or not 0 <= self.decay_frac <= 1 or not 0 <= self.val_fraction < 1:
            raise KobaError(f"train config: warmup must be >= 0, decay_frac in [0, 1] and val_fraction in [0, 1), got "
                            f"{self.warmup}, {self.decay_frac}, {self.val_fraction}")
        if not self.val_fraction and not self.val_data:
            raise KobaError("train config: val_fraction is 0 and there is no val_data, so nothing to validate on; "
                            "set val_fraction > 0 or val_data")
        if not (0 <= self.weight_decay < math.inf and 0 <= self.clip < math.inf):
            raise KobaError(f"train config: weight_decay and clip must be finite and >= 0 (clip 0: off), got "
                            f"{self.weight_decay}, {self.clip}")
        if self.parallel not in ("ddp", "fsdp"):
            raise KobaError(f"train config: parallel must be ddp or fsdp, got {self.parallel!r}")
        if not str(self.out).strip():
            raise KobaError("train config: out must name a folder (it is empty)")
        if self.model.positions == "learned" and self.seq_len > self.model.max_len:
            raise KobaError(f"train config: seq_len {self.seq_len} exceeds model max_len {self.model.max_len}")
        if self.precision not in PRECISIONS:
            raise KobaError(f"train config: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise KobaError(f"train config: device must be auto, cpu or cuda, got {self.device!r}")
        if self.loss_scale != 0 and not usable_scale(self.loss_scale):
            raise KobaError(f"train config: loss_scale must be 0 (dynamic) or a positive number from 2^-126 to 2^126 "
                            f"(float32 holds it and its inverse), got {self.loss_scale}")
        if self.loss_scale and self.precision not in ("fp16", "auto"):  # only fp16 scales its loss
            raise KobaError(f"train config: loss_scale is for precision fp16 (or auto on a GPU without bf16); "
                            f"precision {self.precision} has no loss scaling, so remove loss_scale")
        if not 0 < self.dist_timeout <= MAX_DIST_TIMEOUT:  # inf or 1e300 overflowed timedelta under torchrun
            raise KobaError(f"train config: dist_timeout must be > 0 and <= {MAX_DIST_TIMEOUT:.0e} seconds, got "
                            f"{self.dist_timeout}")
        if not str(self.train_data).strip() or (self.val_data and not str(self.val_data).strip()):
            # "" would read every *.txt below the current folder
            raise KobaError(f"train config: train_data (and val_data, if set) must name a dataset, got "
                            f"{self.train_data!r}, {self.val_data!r}")
        # torch takes any signed or unsigned 64-bit seed (a negative one wraps): runs seeded -1 keep resuming
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -2**63 <= self.seed < 2**63:
            raise KobaError(f"train config: seed must be an integer from -2**63 to 2**63 - 1, got {self.seed!r}")
        if self.lora_rank < 0 or not self.lora_alpha > 0:
            raise KobaError(f"train config: lora_rank must be >= 0 and lora_alpha > 0, got {self.lora_rank}, "
                            f"{self.lora_alpha}")
        # The adapters' scale alpha / rank multiplies float32 weights: inf (or past float32's largest) made NaN at step
        # 1, reported as a diverged loss.
        # (compared, not math.isfinite: a huge integer given in code, 10**400, overflowed it)
        largest = torch.finfo(torch.float32).max
        if self.lora_rank and not (abs(self.lora_alpha) <= largest and self.lora_alpha / self.lora_rank <= largest):
            raise KobaError(f"train config: lora_alpha must be finite with lora_alpha / lora_rank at most float32's "
                            f"largest ({largest:.4g}), got {self.lora_alpha} / {self.lora_rank}")
        if self.lora_rank and not self.init_from:
            raise KobaError("train config: lora_rank needs init_from (LoRA adapts a pre-trained model's weights)")
        if self.lora_rank and (self.parallel == "fsdp" or self.precision == "bf16_master"):
            raise KobaError("train config: lora_rank works with DDP and bf16 autocast, not with parallel fsdp or "
                            "precision bf16_master")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise KobaError("train config: device cuda requested but no CUDA device is available")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KobaError(f"train config: unknown keys {unknown}")
        if not isinstance(data.get("model") or {}, dict):
            raise KobaError(f"train config: model must be a mapping of model keys, got {data['model']!r}")
        data = check_types(cls, data, "train config")
        # A run resuming its own checkpoint (without LoRA's base) takes model and tokenizer from it, not init_from.
        resumes = data.get("resume", cls.resume) and not data.get("lora_rank")
        own = Path(data.get("out", cls.out)) / "checkpoint" if resumes and isinstance(data.get("out", cls.out), str) \
            else None
        data = merge_source(data, own)  # init_from: the source's model and tokenizer
        model = TransformerConfig.from_dict(data.pop("model", {}) or {})
        try:
            config = cls(model=model, **data)
        except TypeError as exc:
            raise KobaError(f"train config: {exc}") from exc
        config.validate()
        return config

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] = (), values: dict | None = None) -> TrainConfig:
        """A YAML config; `overrides` are KEY=VALUE strings (model.KEY for the model), each value read as YAML, then
        `values` (the command line's own flags: out, steps, ...) set as given. Both before from_dict: out decides
        which checkpoint a resuming fine-tune takes its model and tokenizer from."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise KobaError(f"config {path} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise KobaError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        except UnicodeDecodeError:
            raise KobaError(f"config {path} is not UTF-8 YAML text") from None
        if not isinstance(data, dict):
            raise KobaError(f"config {path} must be a mapping")
        return cls.from_dict({**apply_overrides(data, overrides), **(values or {})})

    def to_dict(self) -> dict:
        return asdict(self)


def apply_overrides(data: dict, overrides) -> dict:
    """`--set KEY=VALUE` on the command line: `lr=3e-4`, `model.dropout=0.1`, `init_from=runs/lm/tiny`."""
    import yaml

    data = {**data, "model": dict(data.get("model") or {})}
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts) or len(parts) > 2 or (len(parts) == 2 and parts[0] != "model"):
            raise KobaError(f"--set needs KEY=VALUE or model.KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""  # `val_data=`: the empty string, not null
        except yaml.YAMLError as exc:
            raise KobaError(f"--set {key}: {text!r} is not a YAML value") from exc
        (data["model"] if len(parts) == 2 else data)[parts[-1]] = value
    if not data["model"]:
        del data["model"]  # absent, not empty: with init_from an absent model means "the source's"
    return data


def pick_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def named_groups(model: torch.nn.Module) -> list[list[tuple[str, torch.nn.Parameter]]]:
    """The optimizer's two parameter groups, by name: matrices (weight decay), then the rest (biases, LayerNorm gains,
    ALONE's shared vector: no decay)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [[(n, p) for n, p in named if p.dim() >= 2], [(n, p) for n, p in named if p.dim() < 2]]


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device, flat_master: bool = False):
    """AdamW; weight decay on matrices only. `flat_master` (precision bf16_master without FSDP): the same AdamW on
    fp32 master weights, the model's weights become bf16 (under FSDP the fp32 shards are the master instead)."""
    decay, no_decay = ([p for _, p in group] for group in named_groups(model))
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    betas = (config.beta1, config.beta2)
    if flat_master:
        return MasterWeightAdamW(groups, lr=config.lr, betas=betas, dtype=torch.bfloat16, compile=config.compile)
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas, fused=fused)


def restore_optimizer(optimizer, model, optim_state: dict, meta: dict, config: TrainConfig,
                      sharded_info: distributed.DistInfo | None = None) -> None:
    """Load a checkpoint's optimizer state. bf16_master states convert between the flat layout (one process or DDP)
    and torch's per-parameter one (FSDP), so either resumes the other; a switch to or from bf16_master is refused.
    Under FSDP (`sharded_info`) only rank 0 holds the state: it checks and converts it, and every rank receives its
    shards from it (or rank 0's error)."""
    if sharded_info is not None:
        info = sharded_info
        checked = _or_error(_per_parameter_state, optimizer, model, optim_state, meta, config) if info.main else None
        error = distributed.from_main(checked if isinstance(checked, KobaError) else None, info)
        if error is not None:
            raise error
        distributed.load_optimizer_state(model, optimizer, checked if info.main else {}, from_rank0=True)
        return
    if isinstance(optimizer, MasterWeightAdamW):
        _check_same_precision(optim_state, meta, config)
        layout = [(name, p.shape) for group in named_groups(model) for name, p in group]
        if not MasterWeightAdamW.owns(optim_state):  # written under FSDP
            optim_state = param_state_to_flat(optim_state.get("state", {}), layout, optimizer.master)
        flat = optim_state.get("state", {}).get("flat", {})
        wrong = [k for k in MasterWeightAdamW.STATE_KEYS if torch.is_tensor(flat.get(k))
                 and flat[k].shape != getattr(optimizer, k).shape]
        if wrong:
            raise KobaError(f"checkpoint: the optimizer state's {wrong[0]} has shape {tuple(flat[wrong[0]].shape)}, "
                            f"this model's {tuple(getattr(optimizer, wrong[0]).shape)} (damaged or foreign)")
        optimizer.load_state_dict(optim_state)
        return
    distributed.load_optimizer_state(model, optimizer, _per_parameter_state(optimizer, model, optim_state, meta,
                                                                            config))


def _check_same_precision(optim_state: dict, meta: dict, config: TrainConfig) -> None:
    saved_master = MasterWeightAdamW.owns(optim_state) or (meta.get("config") or {}).get("precision") == "bf16_master"
    if saved_master != (config.precision == "bf16_master"):
        raise KobaError("checkpoint: its optimizer state was saved with precision "
                        f"{'bf16_master' if saved_master else 'other than bf16_master'}; resume with the same "
                        "precision (or start a new out folder)")


def _per_parameter_state(optimizer, model, optim_state: dict, meta: dict, config: TrainConfig) -> dict:
    """A checkpoint's optimizer state in torch's per-parameter layout, checked against this run's AdamW."""
    _check_same_precision(optim_state, meta, config)
    if MasterWeightAdamW.owns(optim_state):  # written without FSDP, resumed under it
        layout = [(name, p.shape) for group in named_groups(model) for name, p in group]
        names = [[name for name, _ in group] for group in named_groups(model)]
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": n}
                  for g, n in zip(optimizer.param_groups, names, strict=True)]
        optim_state = {"state": flat_to_param_state(optim_state, layout), "param_groups": groups}
    check_optimizer_state(optim_state, model)
    return optim_state


def check_optimizer_state(optim_state: dict, model) -> None:
    """Raise unless a per-parameter AdamW state has this run's two parameter groups, and for each of their
    parameters (by name; by number in the groups' order for a state keyed so) its step and moments of its shape."""
    groups, state = optim_state.get("param_groups"), optim_state.get("state")
    expected = named_groups(model)
    if not isinstance(groups, list) or len(groups) != len(expected) or not isinstance(state, dict):
        raise KobaError(f"checkpoint: the optimizer state has {len(groups) if isinstance(groups, list) else 'no'} "
                        f"parameter groups, this run's optimizer {len(expected)} (damaged or foreign)")
    seen = set()
    for group, named in zip(groups, expected, strict=True):
        ids = group.get("params")
        if not isinstance(ids, list) or len(ids) != len(named):
            raise KobaError("checkpoint: the optimizer state's parameter groups do not list this model's parameters "
                            "(damaged or foreign)")
        for pid, (name, p) in zip(ids, named, strict=True):
            if isinstance(pid, str) and pid != name:
                raise KobaError(f"checkpoint: the optimizer state names parameter {pid!r} where this model has "
                                f"{name!r} (damaged or foreign)")
            entry = state.get(pid)
            if not isinstance(entry, dict) or not {"step", "exp_avg", "exp_avg_sq"} <= set(entry):
                raise KobaError(f"checkpoint: the optimizer state has no AdamW step and moments for {name} (damaged)")
            for key in ("exp_avg", "exp_avg_sq"):
                if not torch.is_tensor(entry[key]) or entry[key].shape != p.shape:
                    got = tuple(entry[key].shape) if torch.is_tensor(entry[key]) else type(entry[key]).__name__
                    raise KobaError(f"checkpoint: the optimizer state's {key} of {name} has shape {got}, the "
                                    f"parameter {tuple(p.shape)} (damaged or foreign)")
            seen.add(pid)
    extra = sorted(map(str, set(state) - seen))
    if extra:
        raise KobaError(f"checkpoint: the optimizer state holds entries for {extra[0]!r}, not a parameter of this "
                        "model (damaged or foreign)")


def set_lr(optimizer, lr: float) -> None:
    if isinstance(optimizer, MasterWeightAdamW):
        optimizer.set_lr(lr)
    else:
        for group in optimizer.param_groups:
            group["lr"] = lr


def document_kwargs(x: torch.Tensor, eos_id: int | None, eos_starts: bool = False) -> dict:
    """The forward's `documents` under document_mask (documents_of); nothing otherwise (a model's forward need not
    know it)."""
    return {"documents": documents_of(x, eos_id, eos_starts)} if eos_id is not None else {}


@torch.no_grad()
def evaluate(model, stream: TokenStream, config: TrainConfig, device, autocast, eos_id=None,
             eos_starts: bool = False) -> float:
    model.eval()
    losses = []
    for i in range(config.eval_batches):
        x, y = stream.batch(config.batch_size, batch_generator(config.seed + 1, 0, i))
        x = x.to(device)
        with autocast():
            losses.append(model(x, y.to(device), **document_kwargs(x, eos_id, eos_starts))[1].item())
    model.train()
    return sum(losses) / len(losses)


def read_checkpoint(model, checkpoint_dir: Path):
    """(model_state, optim_state, meta, LoRA adapters or None) if a checkpoint fits `model`, None if there is none;
    raises if it is bad."""
    recover_interrupted_swap(checkpoint_dir)  # a save stopped between its renames left the checkpoint aside
    if not checkpoint_dir.is_dir() or not any(checkpoint_dir.iterdir()):
        return None
    missing = [name for name in ("model.safetensors", "state.json") if not (checkpoint_dir / name).is_file()]
    if missing:  # never train over it from step 0: it may be all that is left of a long run
        raise KobaError(f"checkpoint {checkpoint_dir} is incomplete (no {' or '.join(missing)}); move it away to "
                        "start afresh")
    model_state, optim_state, meta = load_checkpoint(checkpoint_dir)
    check_compatible(model, model_state, checkpoint_dir)
    lora_file = checkpoint_dir / "lora.safetensors"
    adapters = load_model_state(lora_file) if lora_file.is_file() else None
    return model_state, optim_state, meta, adapters


def gather_state(model, optimizer, info, flat_master: bool, lora_scale: float = 0.0,
                 with_optimizer: bool = True) -> tuple[dict, dict | None, dict | None]:
    """(model state, optimizer state, LoRA adapters) to save, on rank 0. Call on every rank (FSDP gathers shards).
    Under LoRA the model state is the merged weights under the plain names (lora.split_state)."""
    if flat_master:  # the fp32 master weights, not their bf16 rounding (FSDP's fp32 shards are the master)
        return optimizer.full_precision_state(model), optimizer.state_dict() if with_optimizer else None, None
    model_state, optim_state = distributed.full_state(model, optimizer, info, with_optimizer)
    adapters = None
    if lora_scale:
        model_state, adapters = split_state(model_state, lora_scale)
    return model_state, optim_state, adapters


def best_validation_loss(folder: Path) -> float:
    """The validation loss recorded with out/best, or inf when there is none yet."""
    try:
        return float(json.loads((folder / "state.json").read_text())["val_loss"])
    except (OSError, ValueError, KeyError, TypeError):
        return math.inf


def _or_error(function, *args):
    """function(*args), or the KobaError it raised: rank 0 reads files alone and hands the error to every rank."""
    try:
        return function(*args)
    except KobaError as exc:
        return exc


class Start(NamedTuple):
    """Where a run starts: its step, the optimizer state and meta to restore (a resume), and LoRA's bookkeeping."""
    step: int
    optim_state: dict | None
    meta: dict
    lora_scale: float            # alpha / r under LoRA, else 0
    trainable: int | None        # LoRA's adapter parameters, else None (all)
    lora_base_digest: str | None


def _from_main_or_raise(function, info, *args):
    """function(*args) on rank 0, its result (or its KobaError, raised) on every rank, so none waits for the others:
    the other nodes may not share rank 0's filesystem, and all must start from the same weights."""
    result = distributed.from_main(_or_error(function, *args) if info.main else None, info)
    if isinstance(result, KobaError):
        raise result
    return result


def starting_weights(model, config: TrainConfig, info, checkpoint_dir: Path, sharded: bool = False,
                     tokenizer=None) -> Start:
    """Load into `model` what the run starts from: its own checkpoint (a resume), else init_from's weights, else the
    fresh init; under LoRA, init_from's weights as the frozen base (on a resume too: the checkpoint holds them merged
    with the adapters, and the digest recorded at the start checks that the source is unchanged), then the
    adapters. `sharded` (FSDP, which refuses LoRA): rank 0 alone loads, into its host-memory model, and keeps the
    optimizer state; the other ranks (their models on the meta device) get its Start, with {} for an optimizer state
    they will receive in restore_optimizer. `tokenizer`: this run's, whose digest init_from's source must have."""
    if sharded:
        own = _or_error(starting_weights, model, config, distributed.DistInfo(), checkpoint_dir, False,
                        tokenizer) if info.main else None
        told = own._replace(optim_state={} if own.optim_state is not None else None) if isinstance(own, Start) else own
        told = distributed.from_main(told, info)
        if isinstance(told, KobaError):
            raise told
        return own if info.main else told
    checkpoint = _from_main_or_raise(read_checkpoint, info, model, checkpoint_dir) if config.resume else None
    step, optim_state, meta, adapters = 0, None, {}, None
    if checkpoint is not None:
        model_state, optim_state, meta, adapters = checkpoint
        check_same_lora(config, meta, checkpoint_dir)
        model.load_state_dict(model_state)
        step = int(meta.get("step", 0))
    if config.init_from and (checkpoint is None or config.lora_rank):
        model.load_state_dict(_from_main_or_raise(read_weights, info, config.model, model, config.init_from,
                                                  tokenizer, checkpoint is not None))  # LoRA: no notice again
    if not config.lora_rank:
        return Start(step, optim_state, meta, 0.0, None, None)
    base_digest = distributed.parameter_digest(model)
    if checkpoint is not None and (meta.get("lora_base_digest") != base_digest or adapters is None):
        raise KobaError(f"checkpoint {checkpoint_dir}: its LoRA adapters were trained on other base weights than "
                        f"{config.init_from} holds now (or are missing); start a new out folder")
    trainable = add_lora(model, config.lora_rank, config.lora_alpha)
    if adapters is not None:
        adapted = {**model.state_dict(), **adapters}
        check_compatible(model, adapted, checkpoint_dir / "lora.safetensors")  # damaged or foreign adapters
        model.load_state_dict(adapted)
    return Start(step, optim_state, meta, config.lora_alpha / config.lora_rank, trainable, base_digest)


def check_same_lora(config: TrainConfig, meta: dict, checkpoint_dir: Path) -> None:
    """A LoRA resume must keep the adapters' rank and scale: A and B reloaded under another lora_alpha / lora_rank
    are another model (alpha 16 -> 64 moved merged weights by 1.5 in review 25), and another rank does not fit. LoRA
    switched off (or on) is refused too: the optimizer state holds the adapters' moments only; full fine-tuning of
    the merged weights starts a new run from them (init_from)."""
    recorded = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    if "lora_rank" not in recorded:  # a checkpoint older than LoRA, or written by hand
        return
    keys = ("lora_rank", "lora_alpha") if config.lora_rank and recorded["lora_rank"] else ("lora_rank",)
    for key in keys:
        if recorded.get(key, getattr(config, key)) != getattr(config, key):
            raise KobaError(f"checkpoint {checkpoint_dir}: {key} is {getattr(config, key)!r} here but "
                            f"{recorded[key]!r} in the checkpoint; its adapters and optimizer state were trained with "
                            "that (set it back, or start another out folder with init_from: this run)")


# Settings that say how a run is carried out, not what it trains: a resume may change them without a notice.
RUN_ONLY_FIELDS = frozenset({"steps", "out", "resume", "progress", "tensorboard", "device", "dist_timeout"})


def check_resumed_config(config: TrainConfig, meta: dict, checkpoint_dir: Path, tokenizer, announce: bool) -> None:
    """A resume must train the model and tokenizer its checkpoint records: a function-defining model field or the
    tokenizer (kind, files, the digest of its files) that differs is refused, with warm_start's comparison.
    Training settings (lr, schedule, batch_size, data, seed, dropout, ...) may change: one notice line names them."""
    recorded = meta.get("config")
    if not recorded:  # a checkpoint that records no config (written by hand or long ago)
        return
    if not isinstance(recorded.get("model"), dict):
        raise KobaError(f"checkpoint {checkpoint_dir}: state.json's config has no model (damaged)")
    try:
        different = model_difference(config.model.to_dict(), recorded["model"])
        recorded_model = TransformerConfig.from_dict(recorded["model"]).to_dict()
    except KobaError as exc:
        raise KobaError(f"checkpoint {checkpoint_dir}: its recorded model config is not valid here ({exc})") from None
    if different:
        key, value, saved = different
        raise KobaError(f"checkpoint {checkpoint_dir}: model {key} is {value!r} here but {saved!r} in the checkpoint; "
                        "a resume trains the checkpoint's model (set it back, or give another out folder)")
    digest, saved_digest = getattr(tokenizer, "digest", None), meta.get("tokenizer_digest")
    same = same_tokenizer(tokenizer, saved_digest, checkpoint_dir / "tokenizer.json")
    different = tokenizer_difference({key: getattr(config, key) for key in TOKENIZER_FIELDS}, recorded,
                                     lambda: bool(digest and saved_digest and same))
    if different is None and not same:
        different = ("the tokenizer's files (digest)", digest, saved_digest)
    if different:
        key, value, saved = different
        raise KobaError(f"checkpoint {checkpoint_dir}: {key} is {value!r} here but {saved!r} in the checkpoint"
                        f"{older_digest_note(tokenizer, saved_digest)}; its weights only fit that tokenizer (set it "
                        "back, or give another out folder)")
    now = config.to_dict()
    # A decaying schedule's rate at a step depends on the total: a changed `steps` changes the rate of the steps
    # still to train (none when the checkpoint is already there).
    trains_on = isinstance(meta.get("step"), int) and config.steps > meta["step"]
    run_only = RUN_ONLY_FIELDS - {"steps"} if config.schedule != "wso" and trains_on else RUN_ONLY_FIELDS
    changed = [f"{key} {recorded[key]!r} -> {value!r}" for key, value in now.items()
               if key != "model" and key not in run_only and key not in TOKENIZER_FIELDS
               and key in recorded and recorded[key] != value]
    if any(item.startswith("steps ") for item in changed):
        changed.append(f"(the {config.schedule} schedule's rate now follows the new total)")
    changed += [f"model.{key} {recorded_model[key]!r} -> {now['model'][key]!r}" for key in FREE_MODEL_FIELDS
                if recorded_model.get(key) != now["model"].get(key)]
    if changed and announce:
        print(f"koba lm train: resuming {checkpoint_dir} with changed training settings: {', '.join(changed)}",
              file=sys.stderr, flush=True)


def _encode_state(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode_state(text) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)


def rng_state(device: torch.device) -> dict:
    """The global random generators' states, for a checkpoint: CPU, and on CUDA every device's and which one this
    process uses. Since session 23 every micro-batch re-seeds them (micro_seed), so a training step's dropout and
    SHAPE draws no longer depend on them; they are kept for any other draw, and rank 0's stands for every rank's."""
    state = {"cpu": _encode_state(torch.get_rng_state())}
    if device.type == "cuda":
        state["cuda"] = [_encode_state(s) for s in torch.cuda.get_rng_state_all()]
        state["cuda_device"] = device.index if device.index is not None else torch.cuda.current_device()
    return state


def restore_rng(state, device: torch.device, info, checkpoint_dir: Path) -> None:
    """Set the generators to a checkpoint's rng_state, so a resumed run draws what the uninterrupted one would have;
    this process's CUDA device gets the saving process's device's state. A checkpoint without one: left as seeded."""
    if state is None:
        return
    try:
        cpu = _decode_state(state["cpu"])
        cuda = [_decode_state(s) for s in state.get("cuda", [])] if device.type == "cuda" else []
        own = cuda[int(state.get("cuda_device", 0))] if cuda else None
        ok = len(cpu) == len(torch.get_rng_state()) and (own is None
                                                         or len(own) == len(torch.cuda.get_rng_state(device)))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, binascii.Error):
        ok = False
    if not ok:
        raise KobaError(f"checkpoint {checkpoint_dir}: state.json's saved random state (rng) is damaged")
    torch.set_rng_state(cpu)
    if own is not None:
        if not info.enabled and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        torch.cuda.set_rng_state(own, device)


def precision_name(compute_dtype, master: bool, flat_master: bool) -> str:
    if master:
        return "bf16 weights, fp32 master AdamW" + ("" if flat_master else " (FSDP mixed precision)")
    names = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast, dynamic loss scaling"}
    return names.get(compute_dtype, "fp32")


def train(config: TrainConfig) -> dict:
    """Train (or resume) and return a summary dict. Raises KobaError on bad input or a non-finite loss."""
    config.validate()
    info, device = distributed.init(pick_device(config.device), config.dist_timeout)
    try:
        with distributed.lost_ranks_as_errors(info), GracefulStop(announce=info.main) as stop:
            return _train(config, info, device, stop)
    finally:
        distributed.cleanup(info)


def document_count(stream: TokenStream, eos: int, eos_starts: bool) -> int:
    """How many documents turn-over dropout numbers in `stream` (TokenStream.document_ids): its document_bounds,
    and with `eos_starts` the tokens before the first eos (numbered -1) where there are any."""
    starts, _ = stream.document_bounds(eos, eos_starts)
    return len(starts) + int((starts[0] if len(starts) else len(stream)) > 0)


def check_outputs(out: Path, keep_best: bool, tensorboard: bool = False) -> None:
    """Refuse up front (not after ckpt_every steps) an out/checkpoint, or out/best with keep_best, that a checkpoint
    may not be written over: a file, or a folder holding other things; and with tensorboard an out/tensorboard that
    write_tensorboard may not replace (the same rule: only event files it wrote)."""
    for folder in (out / "checkpoint", *([out / "best"] if keep_best else [])):
        if not is_replaceable(folder):
            raise KobaError(f"{folder} exists and is not a checkpoint folder; move it away or give another out folder")
    if tensorboard and not is_own_logdir(out / "tensorboard"):
        raise KobaError(f"{out / 'tensorboard'} exists and is not a TensorBoard folder of this run's; move it away, "
                        "give another out folder or set tensorboard: false")


def _train(config: TrainConfig, info, device, stop: GracefulStop) -> dict:
    out = Path(config.out)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    _from_main_or_raise(check_outputs, info, out, config.keep_best, config.tensorboard)
    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer(config.tokenizer, config.vocab, config.merges)
    # Tokens an hf tokenizer added past the model's rows (CodeLlama-34b's) are refused only where a text holds one
    if base_vocab_size(tokenizer) > config.model.vocab_size:
        raise KobaError(f"model vocab_size {config.model.vocab_size} < tokenizer's {base_vocab_size(tokenizer)}")
    turnover = config.model.turnover_p > 0
    if (config.document_mask or turnover) and getattr(tokenizer, "eos_id", None) is None:
        raise KobaError(f"{'document_mask' if config.document_mask else 'turnover_p'} needs a tokenizer with an "
                        f"end-of-text id; this {config.tokenizer} vocabulary has none")
    if turnover and config.compile:
        raise KobaError("turnover_p does not combine with compile (its masks are hashed on the host each step)")
    eos_id = tokenizer.eos_id if config.document_mask else None
    turnover_eos = tokenizer.eos_id if turnover else None
    eos_starts = eos_starts_documents(tokenizer)  # bos is eos: the one eos between documents starts the next
    stream = token_stream(config.train_data, tokenizer, config.tokenizer, config.seq_len)
    if config.val_data:
        train_stream = stream
        val_stream = token_stream(config.val_data, tokenizer, config.tokenizer, config.seq_len)
    else:
        train_stream, val_stream = stream.split(config.val_fraction)
    for name, checked in [(config.train_data, stream)] + ([(config.val_data, val_stream)] if config.val_data else []):
        check_ids_fit(checked.ids_to_check(), config.model.vocab_size, tokenizer, f"train: {name}")  # the data's ids

    sharded = info.enabled and config.parallel == "fsdp"
    # FSDP: rank 0 builds and loads the model in host memory, the others on the meta device; fully_shard moves each
    # block to the device as it shards it (torch's _move_states_to_device), and materialize sends the other ranks
    # their shards. No device holds the whole model, and only rank 0's host does.
    if sharded:
        model = distributed.build_on_rank0(lambda: TransformerLM(config.model), info)
    else:
        model = TransformerLM(config.model).to(device)
    built_on = next(model.parameters()).device  # reported: "meta" on FSDP's ranks other than 0
    model.checkpoint_blocks = config.activation_checkpointing
    checkpoint_dir = out / "checkpoint"
    start = starting_weights(model, config, info, checkpoint_dir, sharded, tokenizer)
    step, optim_state, meta = start.step, start.optim_state, start.meta
    check_resumed_config(config, meta, checkpoint_dir, tokenizer, info.main)
    # Weights init_from gave that turn-over masks trained: recorded, so that `koba lm influence` can refuse this run
    # (rank 0 writes the checkpoints; None: not known, a resume of an older run whose source moved).
    lineage = meta.get(TURNOVER_KEY) if TURNOVER_KEY in meta \
        else turnover_ancestors(config.init_from) if config.init_from and info.main else None
    lineage = {TURNOVER_KEY: lineage} if lineage is not None else {}
    if turnover and info.main and document_count(train_stream, turnover_eos, eos_starts) < 2:
        print(f"koba lm train: note: turnover_p {config.model.turnover_p:g} gives each training document its own "
              f"mask, but {config.train_data}'s training text is one document (no end of text inside it), so "
              "every step trains one fixed half of each FFN and `koba lm influence` has nothing to compare; train "
              "on a collection (a folder or glob of files, each a document)", file=sys.stderr, flush=True)
    master = config.precision == "bf16_master"
    flat_master = master and not (info.enabled and config.parallel == "fsdp")
    if flat_master:  # before wrapping, so DDP registers (and keeps in sync) the bf16 views the model now computes with
        optimizer = make_optimizer(model, config, device, flat_master=True)
    rank0_state = model.state_dict() if sharded and info.main else {}  # the whole model, before it is sharded
    wrapped = distributed.wrap(model, info, config.parallel, compute_dtype=torch.bfloat16 if master else None)
    if sharded:
        distributed.materialize(model, rank0_state, info, device)
        del rank0_state
        model.to(device)  # rank 0's buffers; its shards are there already (fully_shard moved them)
    if not flat_master:
        optimizer = make_optimizer(model, config, device)  # after wrapping: FSDP replaces the parameters with shards
    if optim_state is not None:
        restore_optimizer(optimizer, model, optim_state, meta, config, info if sharded else None)
    forward = torch.compile(wrapped) if config.compile else wrapped
    # bf16_master keeps autocast too: buffers and the loss stay fp32, matmuls meet bf16 weights either way.
    compute_dtype = autocast_dtype(config.precision, device)
    scaler = LossScaler(compute_dtype == torch.float16, device, config.loss_scale)
    if not isinstance(meta.get("loss_scale") or {}, dict):
        raise KobaError(f"checkpoint {checkpoint_dir}: state.json's loss_scale is not a JSON object (damaged)")
    scaler.load_state_dict(meta.get("loss_scale") or {}, f"checkpoint {checkpoint_dir}")  # goes on with its scale
    if config.loss_scale and compute_dtype != torch.float16 and info.main:  # precision auto, not fp16 here
        print(f"koba lm train: note: loss_scale {config.loss_scale:g} is not used: precision auto is "
              f"{precision_name(compute_dtype, master, flat_master)} on this device, and only fp16 scales its loss",
              file=sys.stderr, flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    def autocast():
        return torch.autocast(device.type, dtype=compute_dtype or torch.float32, enabled=compute_dtype is not None)

    saved_step = step if meta else None  # the step of the checkpoint on disk (a resume's, then each one saved)
    # An hf tokenizer's files (what save_checkpoint would find from the config at every save: tokenizer_config.json
    # parsed, the tokenizer loaded where its model's files lie beside it), read at the first save only; each
    # checkpoint still gets its own copy of them.
    tokenizer_files = functools.cache(lambda: own_tokenizer_files(config.to_dict()))

    def kept() -> str:
        if saved_step is not None:
            return (f"last good checkpoint kept at {checkpoint_dir}: step {saved_step}, the weights after step "
                    f"{saved_step}")
        return f"an earlier checkpoint kept at {checkpoint_dir}" if checkpoint_dir.exists() else "no checkpoint yet"

    def non_finite(what: str, value: float, at: int) -> KobaError:
        advice = "; resume from it with a lower lr" if saved_step is not None else "; try a lower lr"
        return KobaError(f"{what} is {value} at step {at}; stopped ({kept()}){advice}")

    log = MetricsLog(out / "metrics.csv", info.main, resume_step=step)
    tokens_per_step = config.batch_size * config.seq_len * config.grad_accum * info.world
    tokens = meta.get("tokens")  # tokens trained so far (a resume may have changed batch_size, seq_len, ...)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        tokens = step * tokens_per_step  # a checkpoint of an older version: as if every step had this size
    bar = None
    if config.progress and info.main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    last_loss, val_loss, t0 = meta.get("loss"), None, time.perf_counter()  # the checkpoint's, if no step runs
    if isinstance(last_loss, bool) or not isinstance(last_loss, int | float) or not math.isfinite(last_loss):
        last_loss = None
    if step >= config.steps and info.main:
        print(f"koba lm train: the checkpoint {checkpoint_dir} is already at step {step} >= steps {config.steps}; "
              "nothing to train (raise steps to train on)", file=sys.stderr, flush=True)
    best_val = math.inf  # a resumed run keeps the best so far (rank 0's: other nodes have no out/best)
    if config.keep_best and step > 0:
        best_val = distributed.from_main(best_validation_loss(out / "best") if info.main else None, info)
    first_step, stopped_by = step, None
    restore_rng(meta.get("rng"), device, info, checkpoint_dir)  # draws outside the steps go on as they would have
    while step < config.steps:
        lr = lr_at(step, config.steps, config.lr, config.warmup, config.schedule, config.min_lr, config.decay_frac)
        set_lr(optimizer, lr)
        loss_sum = 0.0
        for a in range(config.grad_accum):
            micro = a * info.world + info.rank
            x, y, starts = train_stream.batch(config.batch_size, batch_generator(config.seed, step, micro), True)
            # Dropout masks and SHAPE offsets are the micro-batch's own too: with one seed for the run, every rank
            # drew the same masks (rank 1's micro-batch got rank 0's), and DDP was not single-process accumulation.
            torch.manual_seed(micro_seed(config.seed + 2, step, micro))  # + 2: not the windows' or eval's seed
            instances = train_stream.document_ids(starts, x, turnover_eos, eos_starts) \
                if turnover_eos is not None else None
            x = x.to(device, non_blocking=True)
            extra = document_kwargs(x, eos_id, eos_starts)
            if instances is not None:  # each token trains through its own document's turn-over mask
                extra["instances"] = instances.to(device)
            with distributed.no_sync(wrapped, a == config.grad_accum - 1), autocast():
                loss = forward(x, y.to(device, non_blocking=True), **extra)[1]
            scaler.scale(loss / config.grad_accum).backward()
            loss_sum += loss.item()
        last_loss, stopping = distributed.mean_and_any(loss_sum / config.grad_accum, stop.requested is not None,
                                                       info, device)
        if not math.isfinite(last_loss):
            optimizer.zero_grad(set_to_none=True)
            raise non_finite("loss", last_loss, step + 1)
        scaler.unscale(optimizer)  # fp16: the clip threshold and the logged norm are of the true gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip or float("inf")).item()
        if not scaler.enabled and not math.isfinite(grad_norm):  # fp16 skips such a step; others would apply it
            optimizer.zero_grad(set_to_none=True)
            raise non_finite("the gradient norm", grad_norm, step + 1)
        scaler.step(optimizer)  # fp16: skipped, and the loss scale halved, if a gradient overflowed
        optimizer.zero_grad(set_to_none=True)
        scaler.check(step + 1, kept)  # counted from 1, as every other message
        step += 1
        tokens += tokens_per_step
        evaluated = step % config.eval_every == 0 or step == config.steps
        if evaluated:
            val_loss = distributed.mean(evaluate(forward, val_stream, config, device, autocast, eos_id, eos_starts),
                                        info, device)
            if not math.isfinite(val_loss):  # these weights are not saved, as checkpoint or as best
                raise non_finite("the validation loss", val_loss, step)
            if config.keep_best and val_loss < best_val:  # the same mean on every rank: all gather, or none
                best_val = val_loss
                model_state, _, _ = gather_state(model, optimizer, info, flat_master, start.lora_scale,
                                                 with_optimizer=False)
                if info.main:
                    save_checkpoint(out / "best", model_state, None,
                                    {"step": step, "val_loss": val_loss, "config": config.to_dict(), **lineage,
                                     **({"tokenizer_digest": tokenizer.digest}  # init_from run/best checks it
                                        if getattr(tokenizer, "digest", None) else {})},
                                    tokenizer_files=tokenizer_files())
        elapsed = time.perf_counter() - t0
        log.write(step=step, tokens=tokens, lr=f"{lr:.3e}", loss=f"{last_loss:.4f}",
                  grad_norm=f"{grad_norm:.4f}",
                  val_loss=f"{val_loss:.4f}" if evaluated else "",
                  loss_scale=f"{scaler.value:.6g}" if scaler.enabled else "",
                  tokens_per_s=f"{(step - first_step) * tokens_per_step / elapsed:.0f}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.1e}")
        if step % config.ckpt_every == 0 or step == config.steps or stopping:
            if not evaluated:  # the checkpoint's weights must give a finite loss: the step that broke them (a finite
                # loss, then huge weights) would otherwise be saved over the last good checkpoint (review, session 24)
                check = distributed.mean(evaluate(forward, val_stream, config, device, autocast, eos_id, eos_starts),
                                         info, device)
                if not math.isfinite(check):
                    raise non_finite("the loss of the updated weights", check, step)
            model_state, optim_state, adapters = gather_state(model, optimizer, info, flat_master,
                                                              start.lora_scale)
            if info.main:
                save_checkpoint(checkpoint_dir, model_state, optim_state,
                                {"step": step, "loss": last_loss, "tokens": tokens, "config": config.to_dict(),
                                 **lineage,
                                 **({"lora_base_digest": start.lora_base_digest} if config.lora_rank else {}),
                                 **({"loss_scale": scaler.state_dict()} if scaler.enabled else {}),
                                 **({"tokenizer_digest": tokenizer.digest}
                                    if getattr(tokenizer, "digest", None) else {}),
                                 "rng": rng_state(device)},
                                adapters, tokenizer_files=tokenizer_files())
                if config.tensorboard:
                    write_tensorboard(out / "metrics.csv", out / "tensorboard")
            saved_step = step
        if stopping and step < config.steps:  # a signal here or on another rank: all ranks leave after this step
            stopped_by = stop.requested or "a signal to another rank"
            break
    if bar is not None:
        bar.close()
    if info.main:
        plot_curves(out / "metrics.csv", out / "curves.png")
        if config.tensorboard:
            write_tensorboard(out / "metrics.csv", out / "tensorboard")
    distributed.barrier(info)  # no rank reports done before rank 0's last checkpoint is on disk
    elapsed = time.perf_counter() - t0
    return {"steps": step, "loss": None if last_loss is None else round(last_loss, 4),
            "val_loss": None if val_loss is None else round(val_loss, 4),
            "tokens": tokens, "world_size": info.world, "rank": info.rank,
            "local_rank": info.local_rank, "node_rank": info.node_rank,
            "parameter_digest": distributed.parameter_digest(model),
            "built_on": str(built_on),  # under FSDP: rank 0 "cpu" (host memory), the others "meta"
            "tokens_per_s": round((step - first_step) * tokens_per_step / max(elapsed, 1e-9)),
            "parameters": model.num_parameters(), "device": str(device), "out": str(out),
            "trainable_parameters": start.trainable if start.trainable is not None else model.num_parameters(),
            "precision": precision_name(compute_dtype, master, flat_master),
            "skipped_steps": scaler.skipped, "loss_scale": scaler.value,
            "checkpoint": str(checkpoint_dir), "init_from": config.init_from or None,
            "best": {"dir": str(out / "best"), "val_loss": round(best_val, 4)} if math.isfinite(best_val) else None,
            "stopped_by": stopped_by, "exit_code": (stop.exit_code or 128 + 15) if stopped_by else 0}
