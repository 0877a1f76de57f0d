"""Instance-based classification (Ouchi, Suzuki, Kobayashi, Yokoi, Kuribayashi, Konno & Inui 2020, "Instance-Based
Learning of Span Representations: A Case Study through Named Entity Recognition", ACL; their eq. for p(y | x)):

    p(y | x) = sum_{j in D, y_j = y} exp(h(x) . h(x_j)) / sum_{j in D} exp(h(x) . h(x_j))

A sentence is classified by how similar its representation is to each training sentence's, so the training sentences
it is most similar to are the reason for the answer: an explanation by example, not a post-hoc one. The
classifier-based alternative is a softmax over W h(x) on the same encoder (`softmax_logits`); the paper finds about
the same accuracy with more interpretable predictions.

Training samples the memory D: each step scores the batch against `memory` random training instances, the query
itself excluded (it would trivially be its own nearest neighbour); a query with no memory instance of its class adds
no loss. Prediction uses the whole training set as the memory.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from koba_ros.nlp.text_classifier import ClassifierConfig, NgramBags, check_labels, embed_bags, train_epochs


@dataclass
class InstanceConfig(ClassifierConfig):
    embed: int = 128
    hidden: int = 128
    memory: int = 512          # training instances each step scores its batch against


class BagEncoder(nn.Module):
    """h(x): averaged hashed n-gram embeddings, then a ReLU layer and a linear map (text_classifier's n-grams, padded
    or NgramBags, as TurnOverClassifier takes them)."""

    def __init__(self, config: ClassifierConfig, out: int):
        super().__init__()
        self.embed = nn.EmbeddingBag(config.buckets, config.embed, mode="mean", padding_idx=0, sparse=True)
        self.hidden = nn.Linear(config.embed, config.hidden)
        self.out = nn.Linear(config.hidden, out)

    def forward(self, ngrams: torch.Tensor | NgramBags) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(embed_bags(self.embed, ngrams))))


def class_log_probs(scores: torch.Tensor, memory_labels: torch.Tensor, classes: int) -> torch.Tensor:
    """log p(y | x) [B, classes] from similarity scores [B, M] to memory instances labelled memory_labels [M]: the
    log-sum-exp of each class's scores minus that of all (-inf for a class absent from the memory)."""
    one_hot = nn.functional.one_hot(memory_labels, classes).bool()                    # [M, C]
    per_class = scores[:, :, None].masked_fill(~one_hot[None], float("-inf"))          # [B, M, C]
    return torch.logsumexp(per_class, dim=1) - torch.logsumexp(scores, dim=1, keepdim=True)


def fit_instance_based(ngrams: torch.Tensor | NgramBags, labels: torch.Tensor, classes: int, config: InstanceConfig,
                       seed: int = 0) -> BagEncoder:
    if len(ngrams) < 2:
        raise ValueError("instance-based learning needs at least two training instances")
    check_labels(ngrams, labels, classes)
    torch.manual_seed(seed)
    encoder = BagEncoder(config, config.hidden)
    g = torch.Generator().manual_seed(seed + 1)

    def batch_loss(rows):
        memory = torch.randperm(len(ngrams), generator=g)[:config.memory]
        scores = encoder(ngrams[rows]) @ encoder(ngrams[memory]).T                      # [B, M]
        scores = scores.masked_fill(rows[:, None] == memory[None, :], float("-inf"))    # not itself
        log_p = class_log_probs(scores, labels[memory], classes).gather(1, labels[rows, None]).squeeze(1)
        seen = torch.isfinite(log_p)
        return -log_p[seen].mean() if seen.any() else scores.sum() * 0.0

    train_epochs(encoder, len(ngrams), config, seed, batch_loss)
    return encoder


def fit_softmax(ngrams: torch.Tensor | NgramBags, labels: torch.Tensor, classes: int, config: InstanceConfig,
                seed: int = 0, epoch_ngrams: Callable[[int], torch.Tensor | NgramBags] | None = None) -> BagEncoder:
    """The classifier-based baseline: the same encoder with a softmax over `classes` outputs.

    epoch_ngrams(e), if given, is what epoch e trains on instead of `ngrams`: the same rows in the same order with the
    same labels (e.g. each sentence freshly augmented), so the batches and the number of updates are those of
    training on `ngrams`."""
    check_labels(ngrams, labels, classes)
    torch.manual_seed(seed)
    model = BagEncoder(config, classes)
    if epoch_ngrams is None:
        train_epochs(model, len(ngrams), config, seed,
                     lambda rows: nn.functional.cross_entropy(model(ngrams[rows]), labels[rows]))
        return model
    batches_per_epoch, calls, current = -(-len(ngrams) // config.batch), [0], {}

    def batch_loss(rows):
        epoch = calls[0] // batches_per_epoch
        calls[0] += 1
        if epoch not in current:
            current.clear()
            current[epoch] = epoch_ngrams(epoch)
            if len(current[epoch]) != len(ngrams):
                raise ValueError(f"epoch {epoch}: {len(current[epoch])} rows, expected {len(ngrams)}")
        return nn.functional.cross_entropy(model(current[epoch][rows]), labels[rows])

    train_epochs(model, len(ngrams), config, seed, batch_loss)
    return model


@torch.no_grad()
def predict(encoder: BagEncoder, ngrams: torch.Tensor | NgramBags, train_ngrams: torch.Tensor | NgramBags,
            train_labels: torch.Tensor, classes: int, explain: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes [B], indices [B, explain] of the most similar training instances: the explanation)."""
    scores = encoder(ngrams) @ encoder(train_ngrams).T
    predicted = class_log_probs(scores, train_labels, classes).argmax(-1)
    return predicted, scores.topk(min(explain, scores.shape[1]), dim=1).indices
