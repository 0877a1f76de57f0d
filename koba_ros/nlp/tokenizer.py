"""Tokenisers: byte-level (always available) and byte-level BPE loaded from GPT-2 style vocab.json + merges.txt.

No GPT-2 vocabulary ships in any installed package here and nothing can be downloaded, so BPE needs the user's files.
"""
from __future__ import annotations

from pathlib import Path

import torch

from koba_ros.errors import KobaError


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, plus pad (256), bos (257) and eos (258)."""

    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def batch(self, texts: list[str], max_len: int = 256, bos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad (right) and truncate a list of texts: (ids [B, T] long, mask [B, T] bool, True = real token)."""
        if not texts:
            raise KobaError("tokenizer: empty batch")
        encoded = [self.encode(t, bos=bos)[:max_len] for t in texts]
        length = max(1, max(len(e) for e in encoded))
        ids = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = torch.tensor(e, dtype=torch.long)
        return ids, ids != self.pad_id


class BPETokenizer:
    """GPT-2 byte-level BPE from vocab.json + merges.txt (through the `tokenizers` package)."""

    def __init__(self, vocab_path: str | Path, merges_path: str | Path):
        for path in (vocab_path, merges_path):
            if not Path(path).is_file():
                raise KobaError(f"tokenizer: {path} not found (GPT-2 BPE needs vocab.json and merges.txt)")
        from tokenizers import ByteLevelBPETokenizer

        try:
            self._tok = ByteLevelBPETokenizer(str(vocab_path), str(merges_path))
        except Exception as exc:  # the Rust side raises plain Exceptions for malformed files
            raise KobaError(f"tokenizer: cannot read BPE files: {exc}") from exc
        self.vocab_size = self._tok.get_vocab_size()
        self.eos_id = self._tok.token_to_id("<|endoftext|>")
        self.pad_id = self.eos_id if self.eos_id is not None else 0
        self.bos_id = self.pad_id

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._tok.encode(text).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos and self.eos_id is not None else [])

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])


def build_tokenizer(kind: str = "byte", vocab: str = "", merges: str = ""):
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer(vocab, merges)
    raise KobaError(f"tokenizer: kind must be byte or bpe, got {kind!r}")
