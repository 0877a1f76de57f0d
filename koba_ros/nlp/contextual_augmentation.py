"""Contextual augmentation (Kobayashi 2018, "Contextual Augmentation: Data Augmentation by Words with Paradigmatic
Relations", NAACL): new training sentences made by replacing words with words that a bidirectional language model
predicts at their position, sampled with a temperature; the model is conditioned on the sentence's label, so a
replacement keeps the label ("put the duck in ..." labelled duck may become "put the duckie in ...", not "put the
cup in ...").

For position i of sentence S with label y the replacement is drawn from p(w | S without w_i, y)^(1/T), renormalised.
Kobayashi's bidirectional LM is a pair of LSTMs whose states at i are joined; here it is this library's bidirectional
transformer encoder (TextEncoder) trained to predict masked words, with the label as a first token (the same
conditional distribution, learned the masked-LM way). Each word is replaced with probability `p` (the paper:
about 0.25), each from the original context.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TextEncoder
from koba_ros.nlp.text_classifier import check_class_indices
from koba_ros.nlp.text_classifier import words as _words

PAD, MASK, NO_LABEL = 0, 1, 2  # token ids; label y is 3 + y, words follow the labels
# the longest sentence a model is trained on: with the label token, the encoder's default 256 positions. Attention
# costs the square of a batch's width; a longer line is refused, not silently made the width of every batch
MAX_WORDS = TransformerConfig.max_len - 1
# a set whose longest sentence has at most this many words pads every training batch to that longest, as before
# session 25 (bit for bit the results recorded then: a narrower batch sums the same gradients in another order); a
# set with a longer one pads each batch to the batch's own longest, so one long line slows only the batches it is in
PAD_TO_LONGEST = 32


def words_of(text: str) -> list[str]:
    """The lower-cased words of a text (text_classifier.words: [a-z0-9']+ runs in ASCII text, any script's words
    otherwise, each character of an unspaced script alone)."""
    return _words(text)


@dataclass
class AugmenterConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    steps: int = 600
    batch: int = 32
    lr: float = 3e-3
    mask_rate: float = 0.15
    conditional: bool = True    # False: every sentence gets the same "no label" token (the paper's ablation)


class Augmenter(nn.Module):
    """A label-conditional masked word LM: [label, w_1 .. w_n] -> a distribution over words at every position."""

    def __init__(self, vocabulary: list[str], classes: int, config: AugmenterConfig, max_words: int):
        super().__init__()
        self.words, self.classes, self.config = vocabulary, classes, config
        self.index = {w: 3 + classes + k for k, w in enumerate(vocabulary)}
        size = 3 + classes + len(vocabulary)
        self.encoder = TextEncoder(TransformerConfig(vocab_size=size, d_model=config.d_model, n_layers=config.n_layers,
                                                     n_heads=config.n_heads, max_len=max_words + 1, pad_id=PAD))
        self.head = nn.Linear(config.d_model, size)

    def encode(self, sentences: list[list[str]], labels: list[int]) -> torch.Tensor:
        """[N, 1 + longest] ids; a ValueError names a word outside the vocabulary or a label outside 0..classes-1."""
        check_class_indices(labels, self.classes)
        unknown = next((w for words in sentences for w in words if w not in self.index), None)
        if unknown is not None:
            raise ValueError(f"not in the augmenter's vocabulary: {unknown!r}")
        width = 1 + max(map(len, sentences))
        ids = torch.full((len(sentences), width), PAD, dtype=torch.long)
        for row, (words, label) in enumerate(zip(sentences, labels, strict=True)):
            ids[row, 0] = 3 + label if self.config.conditional else NO_LABEL
            ids[row, 1:1 + len(words)] = torch.tensor([self.index[w] for w in words])
        return ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Word logits [B, T, words] (the special tokens and labels are never predicted)."""
        logits = self.head(self.encoder(ids, ids != PAD))
        logits[..., :3 + self.classes] = float("-inf")
        return logits


def fit_augmenter(texts: list[str], labels: list[int], classes: int, config: AugmenterConfig | None = None,
                  seed: int = 0) -> Augmenter:
    """Train on the labelled sentences themselves: each step masks `mask_rate` of the words (at least one per
    sentence) and learns to predict them from both sides and the label. A batch is padded to the set's longest
    sentence when that has at most PAD_TO_LONGEST words, else to its own longest; the random draws are made at the
    set's width either way. Sentences of more than MAX_WORDS words are refused."""
    config = config or AugmenterConfig()
    sentences = [words_of(t) for t in texts]
    if not sentences or not all(sentences):
        raise ValueError("every training sentence needs at least one word")
    check_class_indices(labels, classes)
    longest = max(map(len, sentences))
    if longest > MAX_WORDS:
        number = next(k for k, s in enumerate(sentences) if len(s) == longest)
        raise ValueError(f"sentence {number + 1} has {longest} words; at most {MAX_WORDS}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = Augmenter(sorted({w for s in sentences for w in s}), classes, config, longest)
    # ragged: every sentence's label token and words, one after another (no [N, longest] table)
    lengths = torch.tensor([1 + len(s) for s in sentences])
    starts = torch.cumsum(lengths, 0) - lengths
    flat = torch.tensor([t for s, y in zip(sentences, labels, strict=True)
                         for t in [3 + y if config.conditional else NO_LABEL, *(model.index[w] for w in s)]])
    positions = torch.arange(1 + longest)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    model.train()
    for step in range(config.steps):
        for group in opt.param_groups:  # linear decay to zero
            group["lr"] = config.lr * (1 - step / config.steps)
        rows = torch.randint(0, len(sentences), (config.batch,), generator=g)
        real = positions < lengths[rows, None]
        ids = torch.full((len(rows), 1 + longest), PAD, dtype=torch.long)
        ids[real] = flat[(starts[rows, None] + positions)[real]]
        is_word = ids >= 3 + classes
        chosen = (torch.rand(ids.shape, generator=g) < config.mask_rate) & is_word
        first = torch.multinomial(is_word.float(), 1, generator=g)  # one sure position per row
        chosen[torch.arange(len(ids)), first[:, 0]] = True
        if longest > PAD_TO_LONGEST:  # past the batch's longest every row is padding and nothing is chosen
            width = int(lengths[rows].max())
            ids, chosen = ids[:, :width], chosen[:, :width]
        logits = model(ids.masked_fill(chosen, MASK))
        loss = F.cross_entropy(logits[chosen], ids[chosen])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def augment(model: Augmenter, text: str, label: int, rng: random.Random, p: float = 0.25,
            temperature: float = 1.0) -> str:
    """One augmented copy of `text`: each word, with probability p, replaced by a draw from the LM's distribution at
    its position given the rest of the original sentence and the label (sharpened or flattened by temperature > 0:
    the logits are divided by it). The label, the words and the temperature are checked before `rng` is drawn from."""
    if not 0 < temperature < float("inf"):  # 0 or less: inf / NaN probabilities in torch.multinomial
        raise ValueError(f"temperature must be a finite number above 0, got {temperature}")
    words = words_of(text)
    one = model.encode([words], [label])  # a ValueError for an unknown word or label even when nothing is replaced
    positions = [i for i in range(len(words)) if rng.random() < p]
    if not positions:
        return " ".join(words)
    ids = one.repeat(len(positions), 1)
    rows = torch.arange(len(positions))
    ids[rows, torch.tensor(positions) + 1] = MASK  # each copy masks one chosen word; the others keep the original
    logits = model(ids)[rows, torch.tensor(positions) + 1] / temperature
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    drawn = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=g)[:, 0]
    new = list(words)
    for i, token in zip(positions, drawn.tolist(), strict=True):
        new[i] = model.words[token - 3 - model.classes]
    return " ".join(new)
