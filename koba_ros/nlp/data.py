"""Text datasets: a text file, a folder or glob of them, or the built-in corpus as one token stream, sampled as random
windows."""
from __future__ import annotations

import ast
import glob
import sysconfig
from pathlib import Path

import numpy as np
import torch

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError
from koba_ros.nlp.document_mask import documents_of

BUILTIN = "builtin:docstrings"


def builtin_corpus(max_bytes: int = 2_000_000) -> str:
    """English text that exists wherever Python does: the docstrings of the standard library, in a fixed order.

    Nothing can be downloaded here, so this is the reproductions' natural-language corpus. Cached (parsing takes
    seconds) under ~/.cache/koba_ros."""
    cache = Path.home() / ".cache" / "koba_ros" / f"docstrings_{max_bytes}.txt"
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    text = _collect_docstrings(max_bytes)
    write_atomically(cache, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return text


def _collect_docstrings(max_bytes: int) -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pieces, size = [], 0
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if "test" in path.parent.name or path.name.startswith("test"):  # test suites are not prose
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    pieces.append(doc.strip() + "\n\n")
                    size += len(pieces[-1])
                    if size >= max_bytes:
                        return "".join(pieces)
    return "".join(pieces)


def stdlib_source(max_bytes: int = 12_000_000) -> str:
    """Python source text that exists wherever Python does: the standard library's own .py files (test suites left
    out), the top-level modules first, then the packages, each in sorted order, whole files until max_bytes is passed.

    About 12 MB on CPython 3.11, eight times the docstrings: enough for the full-size reproductions to see their
    training text about once (docs/nlp.md, session 4: the docstrings alone were seen 27 times and measured memorising).
    The first 300 kB (top-level modules only) are the wso reproduction's fine-tuning text."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    packages = sorted(p for p in stdlib.rglob("*.py") if p.parent != stdlib and not _is_test_or_vendored(p, stdlib))
    pieces, size = [], 0
    for path in sorted(stdlib.glob("*.py")) + packages:
        pieces.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(pieces[-1])
        if size > max_bytes:
            break
    return "".join(pieces)


def _is_test_or_vendored(path: Path, stdlib: Path) -> bool:
    parts = path.relative_to(stdlib).parts
    return any(p in ("test", "tests", "idle_test", "site-packages", "dist-packages") or p.startswith("test_")
               for p in parts)


def is_collection(source: str) -> bool:
    """A folder or a glob pattern: a dataset of several documents (see encode_documents)."""
    return source != BUILTIN and not Path(source).is_file() and (Path(source).is_dir() or any(c in source
                                                                                            for c in "*?["))


def dataset_files(source: str) -> list[Path]:
    """The text files a dataset names: one file; a folder: every *.txt below it; a glob pattern such as
    'transcripts/**/*.md': every file it matches. Sorted, so every rank and every run reads them in one order."""
    if not str(source).strip():  # Path("") is the current folder: every *.txt below it
        raise KobaError("dataset name is empty; give a text file, a folder or a glob of them")
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files, what = sorted(p for p in path.rglob("*.txt") if p.is_file()), "folder has no *.txt files"
    elif is_collection(source):
        files, what = sorted(p for p in map(Path, glob.glob(source, recursive=True)) if p.is_file()), \
            "pattern matches no files"
    else:
        raise KobaError(f"dataset {source} not found")
    if not files:
        raise KobaError(f"dataset {source}: the {what}")
    return files


def read_file(path: Path) -> str:
    """A file's text with its line endings as they are (CRLF stays CRLF, as prepared.read_pieces reads it); refused
    if it is not text (TextCheck)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        text = f.read()
    check = TextCheck(path)
    check.add(text)
    check.done()
    return text


class TextCheck:
    """Refuses a dataset file that is not text, read whole or a block at a time (prepared.read_pieces): one that
    holds a NUL byte (a binary, a token file under another name), or whose undecodable bytes (read as U+FFFD) are
    more than 1% of its characters (another encoding, or not text at all)."""

    UNDECODABLE_SHARE = 0.01

    def __init__(self, path: Path):
        self.path, self.chars, self.undecodable = path, 0, 0

    def add(self, text: str) -> None:
        if "\0" in text:
            raise KobaError(f"dataset file {self.path} holds NUL bytes: not a text file (a binary or token file?)")
        self.chars += len(text)
        self.undecodable += text.count("\ufffd")

    def done(self) -> None:
        if self.undecodable > self.UNDECODABLE_SHARE * self.chars:
            raise KobaError(f"dataset file {self.path} is not UTF-8 text ({self.undecodable} of its {self.chars} "
                            "characters are undecodable bytes)")


def documents_with_files(source: str):
    """(file, text) of each document of a dataset, one at a time (a file or the built-in corpus, whose file is None:
    one; a collection: one per non-empty file), so a pass over a large collection holds one file in memory; raises
    at the end if none had text. The one rule for which files become documents (influence names them by it)."""
    has_text = False
    pairs = [(None, builtin_corpus())] if source == BUILTIN else ((f, read_file(f)) for f in dataset_files(source))
    for path, text in pairs:
        has_text = has_text or bool(text.strip())
        if text:
            yield path, text
    if not has_text:
        raise KobaError(f"dataset {source} is empty")


def iter_documents(source: str):
    """The texts of a dataset one at a time (documents_with_files)."""
    for _, text in documents_with_files(source):
        yield text


def load_documents(source: str) -> list[str]:
    """All texts of a dataset (iter_documents) in a list."""
    return list(iter_documents(source))


def load_text(source: str) -> str:
    """A dataset that is one text (a file or the built-in corpus)."""
    if is_collection(source):
        raise KobaError(f"dataset {source} is a collection of files; this reads one text")
    return load_documents(source)[0]


def eos_starts_documents(tokenizer) -> bool:
    """Whether the tokenizer's bos is its eos and starts every text (`prompt_bos`: GPT-NeoX's, Phi-2's,
    StarCoder's <|endoftext|>). Then one such id stands between two documents of a collection, ending one and
    starting the next, and belongs to the next (document_mask.documents_of, TokenStream.document_ids): its text
    sees its bos, as when it is scored alone."""
    eos = getattr(tokenizer, "eos_id", None)
    return eos is not None and bool(getattr(tokenizer, "prompt_bos", False)) and tokenizer.bos_id == eos


def document_separator(tokenizer) -> list[int]:
    """The ids that end each document of a collection: the tokenizer's end-of-text id (GPT-2's <|endoftext|>, the
    byte tokenizer's eos), or a blank line for a BPE vocabulary without one; none where the next document's bos is
    that id (eos_starts_documents: `E a E E b E` gave every bos a document of its own)."""
    eos = getattr(tokenizer, "eos_id", None)
    if eos_starts_documents(tokenizer):
        return []
    return [eos] if eos is not None else tokenizer.encode("\n\n")


def document_start(tokenizer) -> list[int]:
    """The ids that start each document: bos for a tokenizer that starts every text with it (`prompt_bos`: an
    imported Llama's, which was trained that way), else none."""
    return [tokenizer.bos_id] if getattr(tokenizer, "prompt_bos", False) else []


def encode_documents(texts: list[str], tokenizer, separate: bool) -> list[int]:
    """One token stream of the texts in order. With `separate` (a collection) each text is followed by the
    separator, so a window that crosses from one file into the next sees where one ended, as GPT-2's training text
    marks its documents; a single file's ids are its text's alone (after `document_start`'s bos, where there is
    one). Where bos is eos (eos_starts_documents) the stream is `E a E b`: each E ends one document and starts the
    next, and the last document has no E after it."""
    separator = document_separator(tokenizer) if separate else []
    start = document_start(tokenizer)
    return [i for text in texts for i in (start if text else []) + tokenizer.encode(text) + separator]


def split_point(n_tokens: int, val_fraction: float) -> int:
    """Where a stream of n_tokens splits into training and held-out validation text (the last val_fraction)."""
    return int(n_tokens * (1 - val_fraction))


class TokenStream:
    """All tokens of a corpus, as a tensor or as a memory-mapped token file (prepared.py); batches are random windows
    (x, next-token targets y), the same windows either way."""

    def __init__(self, tokens: torch.Tensor | np.ndarray, seq_len: int, name: str = "dataset",
                 largest_id: int | None = None):
        if len(tokens) < seq_len + 1:  # a window is seq_len inputs and their next-token targets
            raise KobaError(f"{name} has {len(tokens)} tokens, fewer than one sequence of {seq_len} tokens and its "
                            f"next-token target ({seq_len + 1})")
        self.tokens = tokens.long() if isinstance(tokens, torch.Tensor) else tokens  # a memory map stays one
        self.seq_len = seq_len
        self.largest_id = largest_id  # where known without reading the tokens (a token file's: prepared.open_tokens)

    def ids_to_check(self):
        """What tokenizer.check_ids_fit needs to see of the stream: its largest id where that is known (a token
        file is not read a second time), else the tokens."""
        return self.tokens if self.largest_id is None else [self.largest_id]

    @classmethod
    def from_text(cls, text: str, tokenizer, seq_len: int, name: str = "dataset") -> TokenStream:
        return cls(torch.tensor(tokenizer.encode(text), dtype=torch.long), seq_len, name)

    @classmethod
    def from_dataset(cls, source: str, tokenizer, seq_len: int) -> TokenStream:
        """A text file, a collection of them (encode_documents) or the built-in corpus, tokenised now."""
        ids = encode_documents(load_documents(source), tokenizer, is_collection(source))
        return cls(torch.tensor(ids, dtype=torch.long), seq_len, source)

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, val_fraction: float) -> tuple[TokenStream, TokenStream]:
        cut = split_point(len(self), val_fraction)
        return TokenStream(self.tokens[:cut], self.seq_len, "train split"), \
            TokenStream(self.tokens[cut:], self.seq_len, "validation split")

    def window(self, start: int) -> torch.Tensor:
        """seq_len + 1 token ids from `start`, as int64 (read from the file for a memory map)."""
        piece = self.tokens[start: start + self.seq_len + 1]
        return piece if isinstance(piece, torch.Tensor) else torch.from_numpy(piece.astype(np.int64))

    def batch(self, batch_size: int, generator: torch.Generator, with_starts: bool = False):
        """(x, y) [batch_size, seq_len]; with_starts also each window's first position in the stream."""
        # Every start from 0 to len - seq_len - 1 (the last whole window; high is exclusive). Before session 23 the
        # last one was never drawn, so a corpus's last token was never a target; every batch changed with the fix.
        starts = torch.randint(0, len(self) - self.seq_len, (batch_size,), generator=generator)
        window = torch.stack([self.window(s) for s in starts.tolist()])
        return (window[:, :-1], window[:, 1:], starts) if with_starts else (window[:, :-1], window[:, 1:])

    def document_ids(self, starts: torch.Tensor, x: torch.Tensor, eos_id: int, eos_starts: bool = False):
        """[B, T] each token's document number in the whole stream (document d ends with the d-th eos): the eos
        tokens before its window's start plus its number inside the window (documents_of; with `eos_starts` an eos
        is its next document's bos)."""
        before = torch.from_numpy(np.searchsorted(self.eos_positions(eos_id), starts.numpy()).astype(np.int64))
        # with eos_starts the stream opens with an eos, so counting it too would number the first document 1
        return before[:, None] + documents_of(x, eos_id, eos_starts) - int(eos_starts)

    def document_bounds(self, eos_id: int, eos_starts: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends): document d is tokens[starts[d]:ends[d]], numbered as document_ids numbers it. Each ends
        with its eos (the last one at the stream's end if it has none); with `eos_starts` each starts at its eos,
        and tokens before the first eos (document_ids' -1; encode_documents' streams have none) are in no document."""
        positions = self.eos_positions(eos_id)
        if eos_starts:
            return positions, np.append(positions[1:], len(self)) if len(positions) else positions
        ends = positions + 1
        if not len(ends) or ends[-1] != len(self):  # the last document has no eos after it
            ends = np.append(ends, len(self))
        return np.concatenate([[0], ends[:-1]]).astype(ends.dtype), ends

    def eos_positions(self, eos_id: int) -> np.ndarray:
        """Where the stream's eos tokens are (found once per stream and id)."""
        if getattr(self, "_eos", (None,))[0] != eos_id:
            self._eos = (eos_id, np.flatnonzero(np.asarray(self.tokens) == eos_id))
        return self._eos[1]


def micro_seed(seed: int, step: int, micro: int) -> int:
    """The seed of micro-batch `micro` of optimiser step `step`. Rank r of W with A accumulation steps takes micro
    indices a·W + r, so every draw seeded so (its windows, its dropout masks and SHAPE offsets) is the same for any
    number of ranks, and DDP equals single-process accumulation. Taken modulo 2**64, the range torch's seeds wrap
    in (manual_seed(-1) is manual_seed(2**64 - 1)): every seed it took before stays the same; a larger one (a run's
    seed above about 1.8e13) overflowed it."""
    return (seed * 1_000_003 + step * 7919 + micro) % 2**64


def batch_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The generator of micro-batch `micro`'s windows (micro_seed)."""
    return torch.Generator().manual_seed(micro_seed(seed, step, micro))
