"""A small text classifier trained through turn-over dropout, so that every training instance's influence can be read
off the trained network (koba_ros.nlp.influence).

Sentences become bags of hashed word unigrams and bigrams (crc32, so ids are the same in every process), averaged in
an embedding table (a fastText-style bag of n-grams), then one ReLU hidden layer and a linear output. Turn-over dropout
masks the averaged embedding and the hidden layer: nothing learned is shared between an instance's sub-network and its
flipped one except the output bias (koba_ros.nlp.turnover_dropout explains why that makes the influence exact).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from koba_ros.nlp.turnover_dropout import TurnOverDropout

_WORD = re.compile(r"[a-z0-9']+")


def ngram_ids(text: str, buckets: int) -> list[int]:
    """Hashed word unigrams and bigrams in 1 .. buckets - 1 (0 pads); at least one id, even for an empty text."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return [1 + zlib.crc32(g.encode()) % (buckets - 1) for g in grams] or [1 + zlib.crc32(b"<empty>") % (buckets - 1)]


def encode_texts(texts: list[str], buckets: int) -> torch.Tensor:
    """[N, longest] n-gram ids, right-padded with 0."""
    rows = [ngram_ids(t, buckets) for t in texts]
    out = torch.zeros(len(rows), max(map(len, rows), default=1), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


@dataclass
class ClassifierConfig:
    buckets: int = 1 << 14
    # wide, because each influence compares two half-networks: at 64 / 128 they differ from each other so much that
    # planted wrong labels were not reliably on top (test_nlp_influence_report; docs/nlp.md "Session 14")
    embed: int = 512
    hidden: int = 1024
    p: float = 0.5          # turn-over dropout rate: 0.5 makes an instance's two sub-networks the same size
    epochs: int = 30
    batch: int = 32
    lr: float = 3e-3
    mask_seed: int = 0      # which masks the instances get (a different seed: a different set of sub-networks)


class TurnOverClassifier(nn.Module):
    def __init__(self, classes: int, config: ClassifierConfig):
        super().__init__()
        self.config = config
        # sparse: a step's gradient is the batch's few n-gram rows, not the whole table (SparseAdam updates only them)
        self.embed = nn.EmbeddingBag(config.buckets, config.embed, mode="mean", padding_idx=0, sparse=True)
        self.drop_embed = TurnOverDropout(config.embed, salt=0, p=config.p, seed=config.mask_seed)
        self.hidden = nn.Linear(config.embed, config.hidden)
        self.drop_hidden = TurnOverDropout(config.hidden, salt=1, p=config.p, seed=config.mask_seed)
        self.out = nn.Linear(config.hidden, classes)

    def bag(self, ngrams: torch.Tensor) -> torch.Tensor:
        return self.embed(ngrams)

    def head(self, bag: torch.Tensor, instances: torch.Tensor | None = None, flip: bool = False) -> torch.Tensor:
        """Logits from averaged embeddings [B, E] (instance b's mask on row b) or [C, V, E] (instance c's mask on
        all V rows of slice c: V targets scored by C sub-networks at once)."""
        h = torch.relu(self.hidden(self.drop_embed(bag, instances, flip)))
        return self.out(self.drop_hidden(h, instances, flip))

    def forward(self, ngrams: torch.Tensor, instances: torch.Tensor | None = None, flip: bool = False):
        return self.head(self.bag(ngrams), instances, flip)


def train_epochs(model: nn.Module, n: int, config: ClassifierConfig, seed: int, batch_loss) -> None:
    """Adam on `config.epochs` passes of shuffled mini-batches of n instances; batch_loss(rows) gives a batch's loss.
    The model's `embed` (an EmbeddingBag with sparse gradients) gets SparseAdam: a step touches only its rows."""
    g = torch.Generator().manual_seed(seed)
    dense = [p for name, p in model.named_parameters() if not name.startswith("embed.")]
    optimizers = (torch.optim.SparseAdam(model.embed.parameters(), lr=config.lr),
                  torch.optim.Adam(dense, lr=config.lr))
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, config.batch):
            loss = batch_loss(order[start:start + config.batch])
            model.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
    model.eval()


def fit_classifier(ngrams: torch.Tensor, labels: torch.Tensor, classes: int, config: ClassifierConfig,
                   seed: int = 0, instance_ids: torch.Tensor | None = None, masked: bool = True) -> TurnOverClassifier:
    """Each instance trains through its own turn-over mask. instance_ids (default 0..N-1) name the instances: keep an
    instance's id when the data set around it changes, and its mask stays the same. masked=False: a plain classifier
    of the same shape (every instance trains the whole network), which can memorise wrong labels."""
    if len(ngrams) == 0:
        raise ValueError("no training instances")
    ids = torch.arange(len(ngrams)) if instance_ids is None else instance_ids
    torch.manual_seed(seed)
    model = TurnOverClassifier(classes, config)
    train_epochs(model, len(ngrams), config, seed,
                 lambda rows: F.cross_entropy(model(ngrams[rows], ids[rows] if masked else None), labels[rows]))
    return model


def fit_classifiers(ngrams: torch.Tensor, labels: torch.Tensor, classes: int, config: ClassifierConfig,
                    seed: int = 0, mask_seeds: int = 1) -> list[TurnOverClassifier]:
    """mask_seeds classifiers, each with its own masks and initialisation, for averaged influence estimates."""
    return [fit_classifier(ngrams, labels, classes, replace(config, mask_seed=config.mask_seed + k), seed + k)
            for k in range(mask_seeds)]


@torch.no_grad()
def accuracy(model: TurnOverClassifier, ngrams: torch.Tensor, labels: torch.Tensor) -> float:
    """The whole network's accuracy (no masks: prediction uses every unit)."""
    return (model(ngrams).argmax(-1) == labels).float().mean().item()
