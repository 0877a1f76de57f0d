"""Token embeddings: a full table, a low-rank table, and ALONE."""
from __future__ import annotations

import torch
from torch import nn


class TableEmbedding(nn.Embedding):
    """The standard V x d lookup table."""


class FactorizedEmbedding(nn.Module):
    """A V x r table projected to d: the 'table of the same parameter count' baseline for ALONE."""

    def __init__(self, vocab_size: int, rank: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, rank)
        self.proj = nn.Linear(rank, dim, bias=False)

    def reset_parameters(self, std: float) -> None:
        """Both factors N(0, sqrt(std) / rank^(1/4)): their product starts at the full table's std, and neither factor
        is tiny. Drawing both at a table's own std (0.02) made embeddings of std 0.001 that barely learn, the fault
        ALONE's FFN had (docs/nlp.md, "ALONE: why the CPU size missed the table's loss"): a baseline handicapped so
        would flatter ALONE."""
        factor_std = std ** 0.5 / self.table.embedding_dim ** 0.25
        nn.init.normal_(self.table.weight, 0.0, factor_std)
        nn.init.normal_(self.proj.weight, 0.0, factor_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.table(ids))


def alone_filters(vocab_size: int, dim: int, codebooks: int, codes: int, p: float, seed: int = 0):
    """The fixed word filters of ALONE (Takase & Kobayashi, NeurIPS 2020, §3.2, memory-efficient filters).

    M codebooks of K random binary codes each; a word draws one code per codebook, and its filter is the element-wise
    sum of its M codes clipped to 1. Code elements are Bernoulli(q) with 1 - (1 - q)^M = 1 - p, so each filter element
    is 1 with probability 1 - p. Returns (codebook tensor [M, K, dim] of 0/1, word codes [V, M] long).
    """
    g = torch.Generator().manual_seed(seed)
    q = 1.0 - p ** (1.0 / codebooks)
    books = (torch.rand(codebooks, codes, dim, generator=g) < q).float()
    word_codes = torch.randint(0, codes, (vocab_size, codebooks), generator=g)
    return books, word_codes


class AloneEmbedding(nn.Module):
    """ALONE (Takase & Kobayashi 2020, eq. 1-2): e_w = W2 · ReLU(W1 · (m_w ⊙ o)).

    o is one trainable vector shared by all words, m_w the fixed filter of word w (alone_filters), W1/W2 a
    feed-forward network without biases (as in the equation). Trainable parameters: D_o + D_o·D_h + D_h·d,
    independent of the vocabulary. W1/W2 start Xavier-uniform whatever the model's init (the authors' released
    code does the same): with GPT-2's N(0, 0.02) both layers, the product of two tiny matrices made the embeddings
    ~0.01 and their gradients tiny, and ALONE trained far slower than a table (docs/nlp.md, "ALONE").
    """

    def __init__(self, vocab_size: int, dim: int, alone_dim: int, hidden: int, codebooks: int, codes: int, p: float):
        super().__init__()
        books, word_codes = alone_filters(vocab_size, alone_dim, codebooks, codes, p)
        self.register_buffer("books", books)            # fixed, saved with the model so filters stay the same
        self.register_buffer("word_codes", word_codes)
        self.shared = nn.Parameter(torch.empty(alone_dim))  # o
        self.w1 = nn.Linear(alone_dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.shared, 0.0, 1.0)  # o: unit scale; W1, W2 then keep the scale through the FFN
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)

    def filters(self, ids: torch.Tensor) -> torch.Tensor:
        codes = self.word_codes[ids]                                       # [..., M]
        picked = self.books[torch.arange(self.books.shape[0], device=ids.device), codes]  # [..., M, D_o]
        return picked.sum(-2).clamp(max=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.w2(torch.relu(self.w1(self.filters(ids) * self.shared)))


def build_embedding(config) -> nn.Module:
    if config.embedding == "alone":
        return AloneEmbedding(config.vocab_size, config.d_model, config.alone_dim or config.d_model,
                              config.alone_hidden or 2 * config.d_model, config.alone_codebooks, config.alone_codes,
                              config.alone_p)
    if config.embedding == "factorized":
        return FactorizedEmbedding(config.vocab_size, config.embed_rank, config.d_model)
    return TableEmbedding(config.vocab_size, config.d_model)


def embedding_parameters(module: nn.Module) -> int:
    """Trainable parameters of an embedding module (ALONE's fixed filters are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())
