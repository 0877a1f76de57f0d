"""Pretrain-then-fine-tune on words: a TextEncoder pretrained as a masked word LM on unlabelled sentences, then
fine-tuned as a sentence classifier (mean of the token states, then a linear layer), optionally as a sparse
sub-network (lottery_tickets.py: the pruned weights are zero at the start and after every step).

The masked word LM is contextual_augmentation's, trained without labels (every sentence starts with the same
"no label" token, which here plays the part of BERT's [CLS]), so the encoder and its vocabulary come from there.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from koba_ros.nlp.contextual_augmentation import PAD, Augmenter, AugmenterConfig, fit_augmenter, words_of
from koba_ros.nlp.lottery_tickets import Masks, apply_masks, prunable_weights


def pretrain_masked_lm(texts: list[str], config: AugmenterConfig, seed: int = 0) -> Augmenter:
    """A masked word LM over `texts` (no labels); its `.encoder` is the pretrained model."""
    return fit_augmenter(texts, [0] * len(texts), 1, replace(config, conditional=False), seed)


def encode_words(pretrained: Augmenter, texts: list[str]) -> torch.Tensor:
    """[N, 1 + longest] token ids: the "no label" token, then the words. Every word must be in the pretraining
    vocabulary (a clear error names the first that is not) and a text no longer than the longest pretraining
    sentence: the encoder's positions are learned, one per position of the sentences it was pretrained on (so
    `koba lm tickets` extends the limit only by pretraining on a longer sentence, e.g. one in --unlabelled)."""
    sentences = [words_of(t) for t in texts]
    longest = pretrained.encoder.config.max_len - 1
    for text, words in zip(texts, sentences, strict=True):
        unknown = [w for w in words if w not in pretrained.index]
        if unknown:
            raise ValueError(f"not in the pretrained vocabulary: {unknown[0]!r}")
        if not words or len(words) > longest:
            why = "" if not words else (": more than any sentence the encoder was pretrained on (its positions are "
                                        "learned, none past the longest); pretrain on a longer one (koba lm tickets "
                                        "--unlabelled) to extend it")
            raise ValueError(f"{text[:60]!r}: a sentence needs 1 to {longest} words, not {len(words)}{why}")
    return pretrained.encode(sentences, [0] * len(sentences))


class EncoderClassifier(nn.Module):
    def __init__(self, pretrained: Augmenter, classes: int):
        super().__init__()
        self.encoder = copy.deepcopy(pretrained.encoder)
        self.head = nn.Linear(pretrained.encoder.config.d_model, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.encode(ids, ids != PAD, normalize=False))


@dataclass
class FineTuneConfig:
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-3


def fine_tune(pretrained: Augmenter, ids: torch.Tensor, labels: torch.Tensor, classes: int, config: FineTuneConfig,
              seed: int, masks: Masks | None = None,
              penalty: Callable[[nn.Module], torch.Tensor] | None = None) -> EncoderClassifier:
    """A fresh copy of the pretrained encoder with a new head (initialised from `seed`, which also orders the
    batches), trained with AdamW on cross-entropy (+ penalty(model)); with masks, only that sub-network."""
    torch.manual_seed(seed)
    model = EncoderClassifier(pretrained, classes)
    weights = prunable_weights(model)
    if masks is not None:
        apply_masks(weights, masks)  # rewind: the sub-network starts from the pretrained weights
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(ids), generator=g)
        for start in range(0, len(ids), config.batch):
            rows = order[start:start + config.batch]
            loss = F.cross_entropy(model(ids[rows]), labels[rows])
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if masks is not None:
                apply_masks(weights, masks)
    model.eval()
    return model
