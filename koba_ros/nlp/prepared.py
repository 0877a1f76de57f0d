"""Token files: a corpus tokenised once (`koba lm prepare`), then read by training through a memory map.

Training from a text file tokenises it at every start, on every rank, and holds it as int64 ids: 8 bytes per token
and rank, on top of the text. A corpus of billions of tokens does not fit that way. `koba lm prepare` streams the
text through the tokenizer once and writes the ids as a flat array (uint16 when the vocabulary fits, as GPT-2's
50,257 ids do, else uint32) in FILE.bin, with FILE.bin.json beside it: dtype, token count, the largest id, and the
tokenizer that made them. A training config whose `train_data` / `val_data` is such a .bin file reads windows
straight from the mapped file: the operating system pages in what the batches touch, shared by every rank on a host.

The text is encoded in pieces of about `chunk_bytes` characters, cut only before a newline that a non-whitespace
character follows (so also after CRLF line ends, blank lines and trailing spaces). GPT-2's pre-tokenisation
pattern makes such a newline a piece of its own: no letter, digit or punctuation piece takes a leading newline, and
a whitespace run before it ends before it (`\\s+(?!\\S)` leaves the last whitespace character to the next piece), as
a piece's trailing whitespace does at the piece's end. So the ids equal those of encoding the whole text at once
(tested and fuzzed, GPT-2 BPE included); the byte tokenizer has no context at all. (The first rule, a cut only
after a newline between two non-spaces, never matched CRLF or blank-line text, and the carry grew to the file.)
An `hf` tokenizer (`cut_after_newline`) keeps that first rule, CUT_AFTER: Llama-3 / Qwen-style patterns attach a
newline to the piece before it ("red.\n" is one piece), so a cut before the newline changes the ids. A tokenizer for
which its cut does not hold (`piece_safe` false, probed by HFTokenizer: a SentencePiece-style `hf` tokenizer marks
each piece's start as a word start) gets each document whole, at the cost of holding it in memory.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.nlp.data import (
    BUILTIN,
    TextCheck,
    TokenStream,
    dataset_files,
    document_separator,
    document_start,
    is_collection,
    load_text,
)
from koba_ros.nlp.tokenizer import older_digest_note

# A cut point: right before a newline that a non-whitespace character follows (not at the text's start).
CUT = re.compile(r"(?<=[\s\S])(?=\n\S)")
# For `hf` tokenizers: right after a lone newline between two non-whitespace characters.
CUT_AFTER = re.compile(r"(?<=\S)\n(?=\S)")


def cut_for(tokenizer) -> re.Pattern:
    """The cut rule proven for the tokenizer (see the module docstring)."""
    return CUT_AFTER if getattr(tokenizer, "cut_after_newline", False) else CUT


def text_pieces(text: str, chunk_bytes: int, cut: re.Pattern | None = None):
    """The text in consecutive pieces of about chunk_bytes characters, each ending at a safe cut (see module doc)."""
    cut = cut or CUT
    start = 0
    while start < len(text):
        match = cut.search(text, start + chunk_bytes) if start + chunk_bytes < len(text) else None
        end = match.end() if match else len(text)
        yield text[start:end]
        start = end


def read_pieces(source: str | Path, chunk_bytes: int, cut: re.Pattern | None = None):
    """Pieces of a text file read a block at a time (the whole file is never in memory), or of the built-in corpus."""
    cut = cut or CUT
    if source == BUILTIN:
        yield from text_pieces(load_text(source), chunk_bytes, cut)
        return
    path = Path(source)
    if not path.is_file():
        raise KobaError(f"dataset {source} not found")
    carry, check = "", TextCheck(path)  # as data.read_file: a binary or another encoding is refused
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        while block := f.read(chunk_bytes):
            check.add(block)
            text = carry + block
            cuts = [m.end() for m in cut.finditer(text)]
            # keep the tail after the last cut: the next block may continue its line (or its whitespace run)
            end = cuts[-1] if cuts else 0
            if end:
                yield text[:end]
            carry = text[end:]
    check.done()
    if carry:
        yield carry


def documents(source: str, chunk_bytes: int, cut: re.Pattern | None = None):
    """Per document of the dataset (data.dataset_files: a file, a folder's *.txt, a glob; or the built-in corpus),
    its pieces: the same documents, in the same order, as data.load_documents reads whole."""
    for path in [BUILTIN] if source == BUILTIN else dataset_files(source):
        yield read_pieces(path, chunk_bytes, cut)


def prepare(source: str, tokenizer, tokenizer_spec: dict, out: str | Path, chunk_bytes: int = 1 << 20) -> dict:
    """Tokenise `source` (a text file, a folder or glob of them, or the built-in corpus) into `out` (.bin) and its
    .json; returns the metadata. The ids equal data.encode_documents' of the whole dataset (separators included)."""
    out = Path(out)
    if out.suffix != ".bin":
        raise KobaError(f"prepare: the output must be a .bin file, got {out}")
    inputs = text_inputs(source, "prepare")
    meta_path = out.with_name(out.name + ".json")
    if clash := {out.resolve(), meta_path.resolve()} & {p.resolve() for p in inputs}:
        raise KobaError(f"prepare: --out {out} would overwrite the input file {clash.pop()}; give another path")
    partial, meta_partial = out.with_name(out.name + ".partial"), meta_path.with_name(meta_path.name + ".partial")
    if folder := next((p for p in (out, meta_path, partial, meta_partial) if p.is_dir()), None):  # before the work
        raise KobaError(f"prepare: {folder} is a folder, where --out {out} writes a file; give another path")
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        count, max_id, text_bytes, files, has_text = _write_tokens(source, tokenizer, partial, dtype, chunk_bytes)
        if not has_text:
            raise KobaError(f"prepare: {source} gave no tokens (is it empty?)")
        meta = {"format": "koba_tokens/1", "dtype": np.dtype(dtype).name, "tokens": count, "max_id": max_id,
                "text_bytes": text_bytes, "source": recorded_source(source), "documents": files,
                "tokenizer": tokenizer_spec, "vocab_size": tokenizer.vocab_size}
        if getattr(tokenizer, "digest", None) is not None:
            meta["tokenizer_digest"] = tokenizer.digest
        meta_partial.write_text(json.dumps(meta, indent=1))
        # The .bin appears whole or not at all, then its description; an older description never stands beside it
        # (a .bin without one is refused by open_tokens in one line).
        meta_path.unlink(missing_ok=True)
        os.replace(partial, out)
        os.replace(meta_partial, meta_path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        meta_partial.unlink(missing_ok=True)
        raise KobaError(f"prepare: reading {source} or writing {out} failed: {exc.strerror or exc}") from None
    except BaseException:  # a bad source, Ctrl-C: no half-written file is left behind
        partial.unlink(missing_ok=True)
        meta_partial.unlink(missing_ok=True)
        raise
    return {**meta, "out": str(out)}


def text_inputs(source: str, command: str) -> list[Path]:
    """The files a dataset names (data.dataset_files; none for the built-in corpus), refused if one is a token file:
    its ids would be read as text (`koba lm prepare` and `koba lm tokenizer` read text)."""
    inputs = [] if source == BUILTIN else dataset_files(source)
    if tokens := [p for p in inputs if is_token_file(str(p))]:
        raise KobaError(f"{command}: {tokens[0]} is a token file (already prepared); give the text it was made from")
    return inputs


def recorded_source(source: str) -> str:
    """The source as an absolute path (the built-in corpus as its name), so that eval can tell, from any folder, that
    a token file holds a run's training text (evaluation.data_names)."""
    return source if source == BUILTIN else str(Path(source).expanduser().resolve())


def _write_tokens(source: str, tokenizer, partial: Path, dtype, chunk_bytes: int):
    """Tokenise `source` into `partial`; (tokens, max id, text bytes, documents, any text at all)."""
    count, max_id, text_bytes, files, has_text = 0, -1, 0, 0, False
    separator = document_separator(tokenizer) if is_collection(source) else []
    start = document_start(tokenizer)
    with partial.open("wb") as f:
        def write(ids):
            nonlocal count, max_id
            ids = np.asarray(ids, dtype=np.int64)
            if ids.size:
                max_id = max(max_id, int(ids.max()))
                f.write(ids.astype(dtype).tobytes())
                count += ids.size

        for pieces in documents(source, chunk_bytes, cut_for(tokenizer)):
            if not getattr(tokenizer, "piece_safe", True):  # its ids depend on where a piece starts: one piece
                pieces = ["".join(pieces)]
            size = 0
            for piece in pieces:
                if not size and piece:  # as encode_documents: a non-empty document starts with document_start
                    write(start)
                write(tokenizer.encode(piece))
                size += len(piece.encode("utf-8"))
                has_text = has_text or bool(piece.strip())
            if size:  # as encode_documents: each non-empty document of a collection ends with the separator
                write(separator)
                text_bytes, files = text_bytes + size, files + 1
    return count, max_id, text_bytes, files, has_text


def is_token_file(source: str) -> bool:
    return source.endswith(".bin")


# What a tokenizer's digest covers, for the refusal of a token file another vocabulary of the same size made.
DIGEST_FILES = {"hf": "tokenizer.json", "bpe": "vocab.json + merges.txt", "gpt2": "ranks file (.tiktoken)"}


def description_problem(meta: dict) -> str | None:
    """What makes a token file's description unusable (a field eval or training reads that is missing or of the
    wrong type), or None."""
    def count(key: str, low: int) -> bool:
        value = meta.get(key)
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not count("tokens", 1):  # prepare never writes an empty file (and an empty one cannot be mapped)
        return "tokens must be a positive integer"
    if not count("text_bytes", 1):  # bits per byte divide by it
        return "text_bytes must be a positive integer"
    if not isinstance(meta.get("tokenizer"), dict):
        return "tokenizer must be an object"
    if "max_id" in meta and not count("max_id", 0):
        return "max_id must be an integer >= 0"
    return None


def open_tokens(path: str | Path, tokenizer_name: str, tokenizer) -> tuple[np.memmap, dict]:
    """(read-only memory map of the ids, metadata) of a prepared .bin; one-line errors for a missing, truncated or
    foreign file, or one that another tokenizer than `tokenizer_name` / `tokenizer` made. The metadata is FILE.bin.json
    with `largest_id` added: the largest id the file holds, as its check of every id found it."""
    path = Path(path)
    meta_path = path.with_name(path.name + ".json")
    if not path.is_file():
        raise KobaError(f"token file {path} not found (make it with koba lm prepare)")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise KobaError(f"token file {path} has no {meta_path.name}: was it written by koba lm prepare?") from None
    except json.JSONDecodeError as exc:
        raise KobaError(f"token file {meta_path} is not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != "koba_tokens/1" or meta.get("dtype") not in ("uint16",
                                                                                                      "uint32"):
        raise KobaError(f"token file {meta_path} is not a koba lm prepare description")
    if problem := description_problem(meta):  # a hand-edited or damaged description: one line, not a traceback
        raise KobaError(f"token file {meta_path} is damaged ({problem}); prepare it again")
    dtype = np.dtype(meta["dtype"])
    expected = meta["tokens"] * dtype.itemsize
    if path.stat().st_size != expected:
        raise KobaError(f"token file {path} has {path.stat().st_size} bytes, its description says {expected}: "
                        "truncated or replaced; prepare it again")
    made_by = meta["tokenizer"].get("tokenizer")
    if made_by != tokenizer_name or meta.get("vocab_size") != tokenizer.vocab_size:
        raise KobaError(f"token file {path} was prepared with tokenizer {made_by} ({meta.get('vocab_size')} ids); "
                        f"this model uses {tokenizer_name} ({tokenizer.vocab_size} ids)")
    # Two vocabularies of one size (hf tokenizer.json, bpe vocab.json + merges.txt, gpt2 ranks) give different ids.
    # A file prepared before session 23 records a digest only for hf: it is taken on the kind and size check above,
    # as it always was (refusing every older bpe / gpt2 token file would force a re-tokenisation of large corpora).
    digest = getattr(tokenizer, "digest", None)
    if digest is not None and meta.get("tokenizer_digest", digest) != digest:
        if older_digest_note(tokenizer, meta["tokenizer_digest"]):  # no copy of the files to check them against
            raise KobaError(f"token file {path} was prepared with this tokenizer.json by an older version, whose "
                            "digest did not cover the special tokens (eos, bos) that made its stream; prepare it again")
        raise KobaError(f"token file {path} was prepared with another {DIGEST_FILES.get(tokenizer_name, 'tokenizer')}"
                        f" of the same size ({meta['tokenizer_digest']}, this one {digest})"
                        f"{' or other special tokens (eos, bos)' if tokenizer_name == 'hf' else ''}; prepare it again")
    ids = np.memmap(path, dtype=dtype, mode="r")
    limit = min(meta.get("max_id", tokenizer.vocab_size - 1), tokenizer.vocab_size - 1)
    largest = -1
    for start in range(0, len(ids), 1 << 24):  # one pass, 16M ids at a time: a bad id would crash a step later
        top = int(ids[start:start + (1 << 24)].max())
        if top > limit:
            raise KobaError(f"token file {path} holds id {top}, above its recorded maximum {limit}: corrupt or "
                            "replaced; prepare it again")
        largest = max(largest, top)
    # what the pass found, so that check_ids_fit (tokens added past a model's rows) need not read the file again
    return ids, {**meta, "largest_id": largest}


def token_stream(source: str, tokenizer, tokenizer_name: str, seq_len: int) -> TokenStream:
    """The training stream of `source`: a prepared .bin through its memory map (refused if another tokenizer made
    it), else a text file or the built-in corpus tokenised now."""
    if not is_token_file(source):
        return TokenStream.from_dataset(source, tokenizer, seq_len)
    ids, meta = open_tokens(source, tokenizer_name, tokenizer)
    return TokenStream(ids, seq_len, source, largest_id=meta["largest_id"])
