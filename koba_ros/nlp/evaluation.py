"""Loss, perplexity and bits per byte of a trained LM on a text: `koba lm eval --checkpoint DIR --data FILE`.

Training reports the loss of a few random windows. This scores a whole text, every token after the first exactly
once (nothing predicts the first one). The token stream is read in windows of `seq_len` tokens that start `stride`
tokens apart. Each window scores only the targets no earlier window scored, i.e. its last `stride` targets (the
first window scores all of its own). So each scored token has at least `seq_len - stride` tokens of context, except
in the first window. With stride = seq_len the windows do not overlap and the evaluation is cheapest. Smaller strides
give every token more context, and a lower, more faithful loss, for seq_len / stride times the compute.

    loss = (1/n) Σ_t −log p(x_t | context_t)   (nats per token)
    perplexity = exp(loss)
    bits per byte = Σ_t −log₂ p(x_t | context_t) / (bytes of the text)

Bits per byte do not depend on the tokenizer, so a byte-level run and a GPT-2 BPE run compare on it. The divisor is
the whole text's UTF-8 bytes; the unscored first token makes the figure low by at most one token's share.

The run's own train_data (`--data` naming the file, folder or glob the checkpoint records, or a token file prepared
from it): the run trained on all but its last `val_fraction` of tokens, so by default only that held-out tail is
scored, cut as training cut it (TokenStream.split), and the result says "split": "val". `--split all` scores the
whole of it and marks the result "overlaps_training", with a notice line; so does a run that held nothing of it out
(it validated on val_data).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from koba_ros.errors import KobaError
from koba_ros.nlp.data import BUILTIN, encode_documents, is_collection, iter_documents, load_documents, split_point
from koba_ros.nlp.document_mask import documents_of
from koba_ros.nlp.prepared import is_token_file, open_tokens
from koba_ros.nlp.tokenizer import check_ids_fit
from koba_ros.nlp.trained import load_trained


def windows(n_tokens: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) per window: inputs tokens[begin:end] predict targets tokens[begin+1:end+1], and
    positions first_scored.. of the window are scored. Together they score targets 1 .. n_tokens-1 once each."""
    if n_tokens < 2:
        raise KobaError(f"eval: the text has {n_tokens} token(s); at least 2 are needed to score one")
    if seq_len < 1 or not 1 <= stride <= seq_len:
        raise KobaError(f"eval: need seq_len >= 1 and 1 <= stride <= seq_len, got seq_len {seq_len}, stride {stride}")
    out, begin, scored_to = [], 0, 0  # scored_to: the last target index scored so far
    while scored_to < n_tokens - 1:
        end = min(begin + seq_len, n_tokens - 1)
        out.append((begin, end, scored_to - begin))
        scored_to = end
        begin += stride
    return out


def same_length_batches(plan: list[tuple[int, int, int]], batch_size: int):
    """Consecutive windows of one length, at most batch_size at a time. Padding a short window to a batch's longest
    changes nothing for a causal model, but LongRoPE (Phi-3) picks its factors from the sequence's length, so a
    padded window would be scored with other frequencies than alone, and the loss would depend on --batch-size."""
    batch: list[tuple[int, int, int]] = []
    for window in plan:
        if batch and (len(batch) == batch_size or window[1] - window[0] != batch[0][1] - batch[0][0]):
            yield batch
            batch = []
        batch.append(window)
    if batch:
        yield batch


@torch.no_grad()
def score(model, tokens: torch.Tensor, seq_len: int, stride: int, batch_size: int = 8,
          eos_id: int | None = None, instance: int | None = None, flip: bool = False,
          eos_starts: bool = False) -> tuple[float, int]:
    """(total nats, number of targets scored) of a 1-D token tensor under `model`, windowed as in `windows`.
    `eos_id`: attend only within documents (a run trained with document_mask is scored as it was trained;
    `eos_starts`: the eos between two documents is the next one's bos, TrainedLM.eos_starts).
    `instance` (a turnover_p model): score under that training document's turn-over sub-network (flipped: the one
    that never learned it) instead of the whole network."""
    model.eval()
    device = next(model.parameters()).device
    plan = windows(tokens.numel(), seq_len, stride)
    total, count = 0.0, 0
    for chunk in same_length_batches(plan, batch_size):
        width = max(end - begin for begin, end, _ in chunk)
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        y = torch.full((len(chunk), width), -100, dtype=torch.long)  # -100: padding or already scored
        for row, (begin, end, first) in enumerate(chunk):
            x[row, :end - begin] = tokens[begin:end]
            y[row, first:end - begin] = tokens[begin + 1 + first:end + 1]
        x = x.to(device)  # causal: padding after a row's end changes nothing before it
        logits = model(x, documents=documents_of(x, eos_id, eos_starts) if eos_id is not None else None,
                       instances=None if instance is None else torch.full_like(x, instance), flip=flip)[0].float()
        y = y.to(device)
        total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100,
                                       reduction="sum"))
        count += int((y != -100).sum())
    if not math.isfinite(total):
        raise KobaError("eval: the loss is not finite (NaN or inf): the checkpoint's weights are broken")
    return total, count


def text_tokens(data: str, trained) -> tuple[torch.Tensor, int]:
    """(1-D token ids, UTF-8 bytes of the text) of a text file, the built-in corpus or a koba lm prepare .bin made
    with the trained model's tokenizer."""
    if is_token_file(data):
        ids, meta = open_tokens(data, trained.config.get("tokenizer", "byte"), trained.tokenizer)
        tokens, n_bytes = torch.from_numpy(ids.astype(np.int64)), int(meta["text_bytes"])
        checked = [meta["largest_id"]]  # open_tokens has read every id: not a second scan
    else:
        texts = load_documents(data)
        tokens = torch.tensor(encode_documents(texts, trained.tokenizer, is_collection(data)), dtype=torch.long)
        n_bytes = sum(len(text.encode("utf-8")) for text in texts)
        checked = tokens
    check_ids_fit(checked, trained.model.config.vocab_size, trained.tokenizer, f"eval: {data}")
    return tokens, n_bytes


SPLITS = ("val", "all")


def data_names(name: str) -> set[str]:
    """The data a dataset name reads, as resolved names: itself (a file, folder or glob; the built-in corpus), and
    for a token file also the text it was prepared from (its ids are that text's, so it splits alike). A relative
    path is read from the current folder: a run's recorded relative train_data matches only where it was trained."""
    if not name:
        return set()
    names = {name if name == BUILTIN else str(Path(name).expanduser().resolve())}
    if is_token_file(name):
        try:
            source = json.loads(Path(name + ".json").read_text()).get("source")
        except (OSError, ValueError, AttributeError):  # open_tokens reports a bad description in one line
            source = None
        if isinstance(source, str) and not is_token_file(source):
            names |= data_names(source)
    return names


def same_data(a: str, b: str) -> bool:
    return bool(data_names(a) & data_names(b))


def training_split(data: str, config: dict, split: str, per_document: bool) -> tuple[float, str | None]:
    """(the share of `data` to score from its end, 0: all of it; a notice when what is scored includes text the run
    trained on, else None) for `data` and the run's recorded training config."""
    train_data, val_data = str(config.get("train_data") or ""), str(config.get("val_data") or "")
    held_out = 0.0 if val_data else config.get("val_fraction") or 0.0
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 <= held_out < 1:
        raise KobaError(f"eval: the checkpoint's recorded val_fraction {held_out!r} is not a number in [0, 1): its "
                        "state.json is damaged")
    if not same_data(data, train_data):
        if split == "val":
            raise KobaError(f"eval: --split val scores the held-out part of the run's train_data ({train_data}); "
                            f"{data} is other data (drop --split)")
        return 0.0, None
    if split == "val" and not held_out:
        why = f"it validated on val_data {val_data}" if val_data else "val_fraction 0"
        raise KobaError(f"eval: --split val: the run held no part of {data} out ({why})")
    if split == "val" and per_document:
        raise KobaError("eval: --split val cuts the run's token stream, --per-document scores whole files: give one")
    if held_out and split != "all" and not per_document:
        return held_out, None
    if held_out:  # what to give instead: --split val refuses --per-document (it cuts the stream, not files)
        how, instead = (("--split all", "--split val scores") if split == "all" else
                        ("--per-document (whole files)", "drop --per-document: --split val (the default) scores"))
        return 0.0, (f"{data} is the run's train_data and {how} scores the {1 - held_out:.0%} it trained on too; "
                     f"{instead} only its held-out part")
    why = f"it validated on val_data {val_data}" if val_data else "val_fraction 0"
    return 0.0, f"{data} is the run's train_data and it trained on all of it ({why}): not a held-out score"


def decoded_bytes(tokens: torch.Tensor, tokenizer) -> int:
    """UTF-8 bytes of the text a slice of the stream spells (the held-out part's bits-per-byte divisor). A character
    cut in two at the split decodes as U+FFFD: off by at most a few bytes. The end-of-text (and bos) ids that
    separate documents are not text: gpt2 and bpe would decode each as the 13 bytes of "<|endoftext|>", where
    text_tokens counts the texts' bytes alone (and the byte tokenizer none)."""
    specials = {i for i in (getattr(tokenizer, "eos_id", None), getattr(tokenizer, "bos_id", None)) if i is not None}
    return len(tokenizer.decode([i for i in tokens.tolist() if i not in specials]).encode("utf-8"))


def evaluate_checkpoint(checkpoint: str | Path, data: str, seq_len: int = 0, stride: int = 0, batch_size: int = 8,
                        device: str = "cpu", per_document: bool = False, split: str = "") -> dict:
    """Score `data` (a text file, a collection, the built-in corpus or a koba lm prepare .bin) under a `koba lm
    train` checkpoint. seq_len 0: the run's training sequence length; stride 0: seq_len (windows that do not
    overlap). `per_document`: each file of a collection is scored alone, from its own first token (as a model
    meets a text in use), instead of as one stream where each file's windows see the previous file. `split`
    ("" = val where the run held part of `data` out, else all; see the module doc): val, all."""
    if split not in ("", *SPLITS):  # before loading the checkpoint
        raise KobaError(f"eval: split must be one of {', '.join(SPLITS)}, got {split!r}")
    trained = load_trained(checkpoint, device)
    held_out, notice = training_split(data, trained.config, split, per_document)
    seq_len = seq_len or int(trained.config.get("seq_len") or trained.model.config.max_len)
    stride = stride or seq_len
    if batch_size < 1:
        raise KobaError(f"eval: batch size must be >= 1, got {batch_size}")
    if trained.model.config.positions == "learned" and seq_len > trained.model.config.max_len:
        raise KobaError(f"eval: seq_len {seq_len} exceeds the model's learned positions "
                        f"({trained.model.config.max_len})")
    document_mask = bool(trained.config.get("document_mask"))
    eos = trained.document_eos
    t0 = time.perf_counter()
    if per_document:
        if is_token_file(data):
            raise KobaError("eval: --per-document reads the text files (a token file has no file boundaries)")
        total = count = n_tokens = n_bytes = documents = 0
        for text in iter_documents(data):
            ids = torch.tensor(encode_documents([text], trained.tokenizer, False), dtype=torch.long)
            check_ids_fit(ids, trained.model.config.vocab_size, trained.tokenizer, f"eval: {data}")
            n_tokens, n_bytes, documents = n_tokens + ids.numel(), n_bytes + len(text.encode("utf-8")), documents + 1
            if ids.numel() >= 2:  # a one-token document has nothing to predict
                nats, scored = score(trained.model, ids, seq_len, stride, batch_size, eos,
                                       eos_starts=trained.eos_starts)
                total, count = total + nats, count + scored
        if not count:
            raise KobaError(f"eval: no document of {data} has two tokens to score")
    else:
        tokens, n_bytes = text_tokens(data, trained)
        if held_out:  # exactly the tokens the run validated on
            tokens = tokens[split_point(tokens.numel(), held_out):]  # shorter than seq_len is fine: windows() copes
            n_bytes = max(1, decoded_bytes(tokens, trained.tokenizer))  # 1: a tail of end-of-text ids only
        n_tokens, documents = tokens.numel(), None
        total, count = score(trained.model, tokens, seq_len, stride, batch_size, eos,
                             eos_starts=trained.eos_starts)
    seconds = time.perf_counter() - t0
    loss = total / count
    return {"checkpoint": str(trained.path), "data": data, "tokens": n_tokens, "scored_tokens": count,
            "bytes": n_bytes, "seq_len": seq_len, "stride": stride, "document_mask": document_mask,
            "per_document": per_document, "documents": documents, "split": "val" if held_out else "all",
            **({"val_fraction": held_out} if held_out else {}), "overlaps_training": notice is not None,
            **({"notice": notice} if notice else {}),
            "loss": round(loss, 6),
            "perplexity": round(math.exp(min(loss, 700.0)), 4),
            "bits_per_byte": round(total / math.log(2) / n_bytes, 6),
            "tokens_per_s": round(count / max(seconds, 1e-9))}
