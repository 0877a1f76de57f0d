"""Document masking: documents packed into one training window attend only within themselves.

A collection's token stream (data.encode_documents) ends each document with the tokenizer's eos, and a random
training window often holds the end of one document and the start of the next. Under plain causal attention the
second document's tokens read the first one's as context, which no real use of the model gives them. With
`document_mask: true` a token attends only to earlier tokens of its own document; the eos belongs to the document
it ends. The Llama 3 report describes the same mask for its pre-training. Where bos is eos and starts every text
(GPT-NeoX's, Phi-2's <|endoftext|> with prompt_bos), one eos stands between two documents and belongs to the next:
each document's tokens see its bos, as when it is scored alone.

Positions are not restarted per document. With RoPE, whose attention depends only on relative positions, a
document's tokens then compute exactly what they would alone (tested); with absolute positions a document keeps
the offset at which the window caught it.

Cost: SDPA gets an explicit [B, T, T] mask, which rules out the flash kernel on a GPU (the memory-efficient kernel
takes masks).
"""
from __future__ import annotations

import torch


def documents_of(ids: torch.Tensor, eos_id: int, eos_starts: bool = False) -> torch.Tensor:
    """[B, T] document number of each token: the count of eos tokens strictly before it. `eos_starts`
    (data.eos_starts_documents: a tokenizer whose bos is its eos and starts every text): the count up to and
    including it, so the one eos between two documents is the next one's bos, which its text attends to alone."""
    is_eos = (ids == eos_id).long()
    return is_eos.cumsum(dim=1) - (0 if eos_starts else is_eos)


def same_document_causal(documents: torch.Tensor) -> torch.Tensor:
    """[B, T, T] bool: query i may attend key j when j <= i and both are in the same document."""
    T = documents.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=documents.device).tril()
    return (documents[:, :, None] == documents[:, None, :]) & causal
