"""Hugging Face GPT-2 in and out: `koba lm export` writes a trained LM as a transformers GPT2LMHeadModel folder,
`koba lm import` turns such a folder into a checkpoint that `init_from`, `koba lm sample` and `koba lm eval` read.
A Llama-shaped model (RMSNorm, SwiGLU, RoPE, with or without biases; hf_llama.py) goes out and comes in as
LlamaForCausalLM (or a relative: Qwen, Mistral, Gemma, Phi-3), a GPT-NeoX-shaped one (hf_neox.py) as
GPTNeoXForCausalLM, a Phi-shaped one (hf_phi.py) as PhiForCausalLM, through the same two commands and the same
checks.

A TransformerLM is GPT-2 exactly when it is Pre-LN with learned absolute positions, a plain embedding table, biases,
GELU (tanh) in an FFN of any width, and neither Spike-No-More fix: then every tensor has a GPT-2 counterpart and the
two compute the same logits. The mapping:

    embed.weight                  transformer.wte.weight
    positions.table.weight        transformer.wpe.weight
    blocks.i.ln1 / ln2            transformer.h.i.ln_1 / ln_2
    blocks.i.attn.qkv             transformer.h.i.attn.c_attn   (GPT-2's Conv1D stores W transposed: [in, out];
    blocks.i.attn.out             transformer.h.i.attn.c_proj    q, k, v are its three column blocks, as ours are
    blocks.i.ffn.fc / proj        transformer.h.i.mlp.c_fc / c_proj   our three row blocks)
    final_norm                    transformer.ln_f
    head.weight                   lm_head.weight (tied to wte when the model ties them)

Both commands check, before writing anything, that the two models give the same logits on a probe batch (within
1e-4 of the largest |logit|, at least 1e-4: float32's rounding grows with the logits, a wrong mapping's error is of
their size): a mapping that were off would otherwise hand over a model that only looks right. Export also writes
the run's tokenizer as Hugging Face files (hf_tokenizer.py: `gpt2`, `bpe` and `byte`) and the tokenizer's
end-of-text id as the model's eos_token_id (a list where an `hf` tokenizer's model listed several: the ids `sample`
stops at, tokenizer.stop_ids). Import takes the weights; a folder holding the byte tokenizer as export
writes it is taken to use bytes, one with its own tokenizer.json that, one with a vocab.json + merges.txt other than
GPT-2's (a `tokenizer: bpe` run's, exported) that BPE, and otherwise a 50,257-id model is taken to use GPT-2's BPE,
which gives GPT-2's ids.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import torch

from koba_ros.errors import KobaError, reason
from koba_ros.nlp import hf_llama, hf_neox, hf_phi
from koba_ros.nlp.checkpoint import hf_tokenizer_files, save_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.hf_tokenizer import EOS, bytes_to_unicode, is_byte_level_folder, write_hf_tokenizer
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.tokenizer import base_vocab_size, build_tokenizer, stop_ids
from koba_ros.nlp.trained import load_trained

GPT2_SHAPE = {"norm": "pre", "positions": "learned", "embedding": "table", "bias": True, "embed_scale": False,
              "embed_norm": False, "norm_type": "layernorm", "ffn": "gelu", "parallel_residual": False,
              "head_bias": False}
TOLERANCE = 1e-4
IMPORTED_SEQ_LEN = 2048
# config.json key where export records the run's training seq_len, and import reads it back as `koba lm eval`'s
# window: without it an exported run came back with eval windows of max_len and another loss (transformers keeps
# a key it does not know through save_pretrained and from_pretrained)
SEQ_LEN_KEY = "koba_seq_len"
GPT2_VOCAB = 50257
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]  # what import reads of a hub repository (not ONNX, GGUF...)
# model_type: (what to call it, transformers' class); GPT-2 comes in here, GPT-NeoX through hf_neox, Phi (1, 1.5
# and 2) through hf_phi, the rest (Phi-3 too) through hf_llama
IMPORTABLE = {"gpt2": ("GPT-2", "GPT2LMHeadModel"), "llama": ("Llama", "LlamaForCausalLM"),
              "qwen2": ("Qwen2", "Qwen2ForCausalLM"), "qwen3": ("Qwen3", "Qwen3ForCausalLM"),
              "mistral": ("Mistral", "MistralForCausalLM"), "gemma": ("Gemma", "GemmaForCausalLM"),
              "gemma2": ("Gemma 2", "Gemma2ForCausalLM"), "gemma3_text": ("Gemma 3 (text)", "Gemma3ForCausalLM"),
              "gpt_neox": ("GPT-NeoX", "GPTNeoXForCausalLM"), "phi": ("Phi", "PhiForCausalLM"),
              "phi3": ("Phi-3", "Phi3ForCausalLM")}
CONVERTERS = {"gpt_neox": hf_neox, "phi": hf_phi}  # model_type: its module; GPT-2's is this one, the others hf_llama


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise KobaError("Hugging Face interchange needs the transformers package (pip install transformers)") from exc
    transformers.utils.logging.disable_progress_bar()  # one line of output per command, as every koba command
    transformers.utils.logging.set_verbosity_error()  # its load report is ours to give, in one line
    return transformers


def check_gpt2_shaped(config: TransformerConfig) -> None:
    for key, value in GPT2_SHAPE.items():
        if getattr(config, key) != value:
            raise KobaError(f"export: GPT-2 has {key} {value!r}; this model has {getattr(config, key)!r}, which "
                            "GPT2LMHeadModel cannot compute")
    if not config.has_qkv_bias:
        raise KobaError("export: GPT-2 has biases on q, k and v; this model has qkv_bias false, which "
                        "GPT2LMHeadModel cannot compute")
    if config.attention_window:
        raise KobaError("export: GPT-2 attends over its whole context; this model has a sliding window "
                        f"({config.attention_window} tokens), which GPT2LMHeadModel cannot compute (a Llama-shaped "
                        "run with one exports as a Mistral)")
    if config.qk_norm or config.head_dim * config.n_heads != config.d_model:
        raise KobaError("export: GPT-2's heads fill its width and its queries and keys are not normalised; this "
                        f"model has {config.n_heads} heads of {config.head_dim} in {config.d_model} and qk_norm "
                        f"{config.qk_norm}, which GPT2LMHeadModel cannot compute")
    if config.attn_softcap or config.logit_softcap or config.attn_scale_dim:
        raise KobaError("export: GPT-2 neither soft-caps its logits nor scales attention other than by its head "
                        "width; this model does (Gemma 2's options), which GPT2LMHeadModel cannot compute")
    if config.kv_heads != config.n_heads:
        raise KobaError(f"export: GPT-2 has as many key/value heads as query heads; this model has {config.kv_heads} "
                        f"for {config.n_heads} (grouped-query attention), which GPT2LMHeadModel cannot compute")


def gpt2_config(config: TransformerConfig):
    check_gpt2_shaped(config)
    return _transformers().GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_len, n_embd=config.d_model, n_layer=config.n_layers,
        n_head=config.n_heads, n_inner=config.d_ff or None, activation_function="gelu_new", resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout, layer_norm_epsilon=config.norm_eps,
        tie_word_embeddings=config.tie_embeddings, bos_token_id=None, eos_token_id=None)


def our_config(hf_config, tied: bool | None = None) -> TransformerConfig:
    """The TransformerConfig of a GPT2Config, refused in one line where GPT-2's options leave what ours compute.
    `tied`: whether the loaded model's head is its embedding table (default: the config's flag)."""
    checks = {"activation_function": "gelu_new", "scale_attn_weights": True,
              "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}
    for key, value in checks.items():
        if getattr(hf_config, key, value) != value:
            raise KobaError(f"import: this GPT-2 has {key} {getattr(hf_config, key)!r}; only {value!r} is supported")
    vocab = hf_config.vocab_size
    return TransformerConfig(vocab_size=vocab, d_model=hf_config.n_embd, n_layers=hf_config.n_layer,
                             n_heads=hf_config.n_head, d_ff=0 if hf_config.n_inner in (None, 4 * hf_config.n_embd)
                             else hf_config.n_inner,
                             max_len=hf_config.n_positions, norm="pre", positions="learned", embedding="table",
                             bias=True,
                             tie_embeddings=bool(hf_config.tie_word_embeddings if tied is None else tied),
                             norm_eps=float(hf_config.layer_norm_epsilon),
                             pad_id=GPT2_VOCAB - 1 if vocab >= GPT2_VOCAB else min(256, vocab - 1))


def _pairs(n_layers: int):
    """(our name, GPT-2's name, transposed) for every tensor."""
    yield "embed.weight", "transformer.wte.weight", False
    yield "positions.table.weight", "transformer.wpe.weight", False
    for i in range(n_layers):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("ln1", "ln_1"), ("ln2", "ln_2")):
            yield ours + a + ".weight", theirs + b + ".weight", False
            yield ours + a + ".bias", theirs + b + ".bias", False
        for a, b in (("attn.qkv", "attn.c_attn"), ("attn.out", "attn.c_proj"), ("ffn.fc", "mlp.c_fc"),
                     ("ffn.proj", "mlp.c_proj")):
            yield ours + a + ".weight", theirs + b + ".weight", True
            yield ours + a + ".bias", theirs + b + ".bias", False
    yield "final_norm.weight", "transformer.ln_f.weight", False
    yield "final_norm.bias", "transformer.ln_f.bias", False
    yield "head.weight", "lm_head.weight", False


@torch.no_grad()
def to_hf(model: TransformerLM):
    """A GPT2LMHeadModel computing the same logits as `model`."""
    hf = _transformers().GPT2LMHeadModel(gpt2_config(model.config))
    ours = model.state_dict()
    theirs = hf.state_dict()
    for mine, name, transposed in _pairs(model.config.n_layers):
        theirs[name].copy_(ours[mine].t() if transposed else ours[mine])
    return hf.eval()


@torch.no_grad()
def from_hf(hf) -> TransformerLM:
    """A TransformerLM computing the same logits as the GPT2LMHeadModel `hf`."""
    model = TransformerLM(our_config(hf.config, tied=hf_llama.shares_its_embeddings(hf)))
    theirs = hf.state_dict()
    state = {}
    for mine, name, transposed in _pairs(model.config.n_layers):
        state[mine] = theirs[name].t().float() if transposed else theirs[name].float()
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def probe_logits(model: TransformerLM, hf, seed: int = 0, what: str = "check") -> tuple[torch.Tensor, torch.Tensor]:
    """The two models' logits on a random probe batch that fills the position table. `hf`: a transformers model, or
    another TransformerLM (`koba lm expand`'s grown model). A transformers model that cannot run (a config its own
    code fails on: Gemma 2 with sliding_window 0) is one line."""
    g = torch.Generator().manual_seed(seed)
    # Past a sliding window too, where a model that ignored it would first differ.
    length = min(model.config.max_len, max(64, 2 * model.config.attention_window))
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=g)
    model.eval()
    hf.eval()
    if isinstance(hf, TransformerLM):
        theirs = hf(ids)[0]
    else:
        try:
            theirs = hf(input_ids=ids).logits
        except Exception as exc:  # noqa: BLE001 - transformers' own failure on this config: bad input, one line
            raise KobaError(f"{what}: transformers cannot run this model: {reason(exc)}") from None
    return model(ids)[0], theirs


def largest_logit_difference(model: TransformerLM, hf, seed: int = 0) -> float:
    """Max |logit difference| of the two models on the probe batch (probe_logits)."""
    ours, theirs = probe_logits(model, hf, seed)
    return float((ours - theirs).abs().max())


def check_same_logits(model, hf, what: str) -> float:
    """The largest logit difference on the probe batch, refused in one line (before writing) above TOLERANCE times
    the larger of 1 and the largest |logit|: float32 rounds a logit of 140 to within about 1e-5 and twelve layers
    add up to 1.4e-4 between two exact implementations, where a wrong mapping is off by the logits' own size."""
    ours, theirs = probe_logits(model, hf, what=what)
    difference = float((ours - theirs).abs().max())
    scale = max(1.0, float(ours.abs().max()), float(theirs.abs().max()))
    if not (math.isfinite(difference) and difference <= TOLERANCE * scale):  # NaN and inf fail too
        raise KobaError(f"{what}: the two models' logits differ by {difference:.2e}, more than {TOLERANCE} of their "
                        f"largest |logit| ({scale:.3g}); nothing written")
    return difference


# The families export writes, in the order a tie for the nearest is broken; a tuple: the values that family takes.
# GPT-NeoX and Phi also need a GELU FFN, which their shapes leave out (is_neox_shaped, is_phi_shaped check it).
FAMILY_SHAPES = (("GPT-2", GPT2_SHAPE), ("Llama", hf_llama.LLAMA_SHAPE),
                 ("GPT-NeoX", {**hf_neox.NEOX_SHAPE, "ffn": tuple(hf_neox.ACTIVATIONS)}),
                 ("Phi", {**hf_phi.PHI_SHAPE, "ffn": tuple(hf_neox.ACTIVATIONS)}))


def nearest_family(config: TransformerConfig) -> str:
    """The family whose shape differs from `config` in the fewest fields, and those fields in its shape's order: one
    short line that says what to change (a dump of every field of four shapes hid the one that differed)."""
    def wrong(shape: dict) -> list[str]:
        return [key for key, value in shape.items()
                if not (getattr(config, key) in value if isinstance(value, tuple) else getattr(config, key) == value)]

    name, shape = min(FAMILY_SHAPES, key=lambda family: len(wrong(family[1])))  # min keeps the first of a tie
    return f"the nearest, {name}, needs " + ", ".join(
        f"{key} {' or '.join(map(repr, shape[key])) if isinstance(shape[key], tuple) else repr(shape[key])} "
        f"(this model: {getattr(config, key)!r})" for key in wrong(shape))


def _fresh_folder(out: Path, what: str) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise KobaError(f"{what}: {out} is not empty; give a new folder")


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> dict:
    """`koba lm export`: a koba lm train checkpoint as a Hugging Face GPT-2 folder (config.json, model.safetensors)."""
    out = Path(out)
    _fresh_folder(out, "export")
    trained = load_trained(checkpoint)
    config = trained.model.config
    # A Phi-3 (LongRoPE, or hf_family phi3) goes to hf_llama even when it is not Llama-shaped, to be told why there
    family = hf_llama if hf_llama.is_llama_shaped(config) or hf_llama.wants_phi3(config) else \
        hf_neox if hf_neox.is_neox_shaped(config) else hf_phi if hf_phi.is_phi_shaped(config) else None
    if family is None and any(getattr(config, k) != v for k, v in GPT2_SHAPE.items()):
        raise KobaError(f"export: this model is neither GPT-2-shaped, Llama-shaped, GPT-NeoX-shaped nor Phi-shaped; "
                        f"{nearest_family(config)}")
    hf = family.to_hf(trained.model) if family else to_hf(trained.model)
    difference = check_same_logits(trained.model, hf, "export")
    # generate() then stops where `koba lm sample` stops: at the eos, or at any of an hf model's list (an instruct
    # model's end of turn too), written as a list as transformers' own instruct models write it
    stops = stop_ids(trained.tokenizer)
    eos = list(stops) if len(stops) > 1 else stops[0] if stops else None
    hf.config.eos_token_id = hf.generation_config.eos_token_id = eos
    setattr(hf.config, SEQ_LEN_KEY, int(trained.config.get("seq_len") or config.max_len))
    # Model and tokenizer go into a sibling folder (named per process, as atomic_write's files) renamed into place
    # whole: a tokenizer refused after the weights were written leaves nothing that blocks a re-run.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf.save_pretrained(tmp)
        kind = write_hf_tokenizer(trained.config, tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "source": str(trained.path), "parameters": trained.model.num_parameters(),
            "architecture": hf_llama.architecture(config) if family is hf_llama else
            {hf_neox: "gpt_neox", hf_phi: "phi", None: "gpt2"}[family],
            "tokenizer": kind, "eos_token_id": eos, "max_logit_difference": difference}


def _own_bpe(folder: Path) -> bool:
    """Whether `folder` holds a vocab.json + merges.txt that is not GPT-2's (as export writes GPT-2's from its
    tiktoken ranks, hf_tokenizer.tiktoken_to_gpt2_files): a `tokenizer: bpe` run's own vocabulary."""
    from koba_ros.nlp.tokenizer import _read_ranks, whisper_gpt2_ranks

    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (folder / "merges.txt").is_file() or not isinstance(vocab, dict):
        return False
    path = whisper_gpt2_ranks()
    if len(vocab) != GPT2_VOCAB or path is None:  # without GPT-2's ranks installed the folder's own is all there is
        return True
    ranks, table = _read_ranks(path), bytes_to_unicode()
    return vocab != {"".join(table[b] for b in token): rank for token, rank in ranks.items()} | {EOS: len(ranks)}


def _unreachable_hub(timeout_s: float = 3.0) -> str:
    """The Hugging Face hub's host if a TCP connection to it fails, else "". Asked first because transformers' own
    retries take about 40 s to give up on an unreachable hub (measured offline, session 18)."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    if constants.HF_HUB_OFFLINE:
        return f"{url.hostname} (HF_HUB_OFFLINE is set)"
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout_s).close()
        return ""
    except OSError:
        return url.hostname or constants.ENDPOINT


# Buffers that older checkpoints saved and transformers now computes: never weights (transformers drops them itself).
# Buffers older transformers saved that today's classes no longer list as ignorable: RoPE's frequencies, position ids,
# and GPT-2's / GPT-NeoX's attn.masked_bias (the -1e4 fill of the causal mask, written by transformers 3.x-4.2x).
HARMLESS_UNEXPECTED = (r"rotary_emb\.inv_freq", r"(^|\.)position_ids$", r"(^|\.)(attn|attention)\.masked_bias$")


def _unexpected_keys(hf, loading: dict) -> list[str]:
    """The tensors of the weights files that the loaded model has no place for, less those its class declares
    ignorable (_keys_to_ignore_on_load_unexpected: GPT-2's and NeoX's saved attention masks) and old RoPE buffers."""
    patterns = [*(getattr(hf, "_keys_to_ignore_on_load_unexpected", None) or []), *HARMLESS_UNEXPECTED]
    return sorted(key for key in loading.get("unexpected_keys", []) or []
                  if not any(re.search(pattern, key) for pattern in patterns))


def imported_seq_len(hf_config, config: TransformerConfig, source: str) -> int:
    """`koba lm eval`'s default window for an imported model: the seq_len the run trained with where `koba lm export`
    recorded it (SEQ_LEN_KEY), else the model's whole context, up to 2048 tokens (a Llama 3.2's 131072 would need
    terabytes of attention scores on a CPU; --seq-len asks for more)."""
    recorded = getattr(hf_config, SEQ_LEN_KEY, None)
    if recorded is None:
        return min(config.max_len, IMPORTED_SEQ_LEN)
    learned = config.positions == "learned"  # as training checks: only a position table limits seq_len
    whole = isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 1
    if not whole or (learned and recorded > config.max_len):
        raise KobaError(f"import: {source}'s config.json has {SEQ_LEN_KEY} {recorded!r}, not a whole number from 1"
                        f"{f' to its max_len {config.max_len}' if learned else ' up'}")
    return recorded


def import_pretrained(source: str, out: str | Path, tokenizer: str = "", vocab_file: str = "",
                      merges: str = "") -> dict:
    """`koba lm import`: a Hugging Face GPT-2 folder (or a hub name, where the hub can be reached) as a checkpoint
    whose recorded config names the tokenizer: `gpt2` for GPT-2's 50,257 ids unless `tokenizer` (with `vocab_file`
    and `merges` for bpe) says otherwise."""
    out = Path(out)
    _fresh_folder(out, "import")
    # recorded whole, as the folder's own files are: a relative path would be read from wherever `sample` runs
    vocab_file, merges = (str(Path(name).expanduser().resolve()) if name else "" for name in (vocab_file, merges))
    transformers = _transformers()
    path = Path(source).expanduser()
    if not path.exists() and (path.is_absolute() or source.startswith((".", "~"))):  # a path, not a hub name
        raise KobaError(f"import: no folder {source}")
    hub = "" if path.exists() else _unreachable_hub()
    if not path.exists():  # a hub name: its files, fetched (or, off line, from the local hub cache), as a folder
        from huggingface_hub import snapshot_download

        try:  # configs, tokenizer files and safetensors weights; the older .bin weights only where those are all
            path = Path(snapshot_download(source, local_files_only=bool(hub), allow_patterns=HUB_FILES))
            if not any(path.glob("*.safetensors")):
                path = Path(snapshot_download(source, local_files_only=bool(hub), allow_patterns=[*HUB_FILES, "*.bin"]))
        except Exception as exc:  # noqa: BLE001 - no such repository, no network, not in the cache: one line
            if hub:
                raise KobaError(f"import: no folder {source}, and {hub} cannot be reached to fetch it as a hub name "
                                "(nor is it in the local hub cache)") from None
            raise KobaError(f"import: cannot fetch {source} from the hub: {reason(exc)}") from None
    config_file, model_type = path / "config.json", "gpt2"
    if config_file.is_file():  # a BERT folder: say so, not transformers' size-mismatch report
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except (ValueError, AttributeError):
            raise KobaError(f"import: {config_file} is not a JSON object") from None
        if not isinstance(model_type, str) or model_type not in IMPORTABLE:  # ["llama"] is unhashable
            raise KobaError(f"import: {source} holds a {model_type!r} model, not one of "
                            f"{', '.join(name for name, _ in IMPORTABLE.values())}")
    kind, class_name = IMPORTABLE[model_type]
    model_class = getattr(transformers, class_name)
    try:
        hf, loading = model_class.from_pretrained(path, local_files_only=True, output_loading_info=True,
                                                  ignore_mismatched_sizes=True)  # refused below, in one line
    except Exception as exc:  # noqa: BLE001 - a truncated weights file, a BERT config: all bad input
        raise KobaError(f"import: cannot load a {kind} from {source}: {reason(exc)}") from None
    # transformers fills a tensor the files lack with random numbers and only prints a report; the logit check
    # below cannot see it (both models share the random tensor), so a missing or misshapen tensor is refused here.
    lacking = [*loading.get("missing_keys", []), *[m[0] if isinstance(m, tuple) else m
                                                   for m in loading.get("mismatched_keys", [])]]
    if lacking:
        raise KobaError(f"import: {source} lacks {len(lacking)} of a {kind}'s tensors (first: {sorted(lacking)[0]}); "
                        "its weights would be random")
    # and one the config has no place for is dropped without a word: a config of 1 layer over 2 layers' weights
    # would import the first layer alone (its logit check agrees with that truncated model).
    extra = _unexpected_keys(hf, loading)
    if extra:
        raise KobaError(f"import: {source} holds {len(extra)} tensors its config has no place for (first: {extra[0]}); "
                        "its config.json does not describe its weights (fewer layers or a smaller model?)")
    converter = from_hf if model_type == "gpt2" else CONVERTERS.get(model_type, hf_llama).from_hf
    model = converter(hf)
    difference = check_same_logits(model, hf_llama.exact_embed_scale(hf.float()), "import")
    vocab = model.config.vocab_size
    if not tokenizer and path.is_dir() and is_byte_level_folder(path):  # what `koba lm export` wrote for bytes
        tokenizer = "byte"
    elif not tokenizer and (path / "tokenizer.json").is_file():  # a pretrained model's own tokenizer, first:
        tokenizer, vocab_file = "hf", str(path / "tokenizer.json")  # a Llama of 50,257 ids is not GPT-2's
    elif not tokenizer and path.is_dir() and _own_bpe(path):  # a `tokenizer: bpe` run's vocabulary, exported
        tokenizer, vocab_file, merges = "bpe", *(str((path / name).resolve()) for name in ("vocab.json", "merges.txt"))
    elif not tokenizer and vocab in (GPT2_VOCAB, 50304):
        tokenizer = "gpt2"
    if tokenizer == "hf" and not vocab_file and (path / "tokenizer.json").is_file():
        vocab_file = str(path / "tokenizer.json")
    if not tokenizer:
        raise KobaError(f"import: a vocabulary of {vocab} ids is not GPT-2's and the folder has no tokenizer.json "
                        "(nor vocab.json + merges.txt); say which tokenizer made its ids (--tokenizer "
                        "byte|gpt2|bpe|hf)")
    # Tokens added past the rows (CodeLlama-34b's four infilling ones) are the model's as transformers runs it:
    # only a text that holds one is refused (check_ids_fit).
    built = build_tokenizer(tokenizer, vocab_file, merges)
    base = base_vocab_size(built)
    if base > vocab:
        raise KobaError(f"import: the {tokenizer} tokenizer has more ids than this model's {vocab} ({base}, not "
                        "counting tokens added past its vocabulary)")
    files = {}
    if tokenizer == "hf":  # the checkpoint keeps its own copy: the source folder may be a cache that goes away
        files, vocab_file = hf_tokenizer_files(Path(vocab_file)), str((out / "tokenizer.json").resolve())
    config = {"model": model.config.to_dict(), "tokenizer": tokenizer, "vocab": vocab_file, "merges": merges,
              "seq_len": imported_seq_len(hf.config, model.config, source)}
    # the digest init_from and resume check, as a trained run's checkpoint records it (the hf copy gives the same)
    digest = {"tokenizer_digest": built.digest} if getattr(built, "digest", None) else {}
    save_checkpoint(out, model.state_dict(), None, {"step": 0, "config": config, "imported_from": source, **digest},
                    tokenizer_files=files)
    return {"out": str(out), "source": source, "parameters": model.num_parameters(), "tokenizer": tokenizer,
            "max_logit_difference": difference}
