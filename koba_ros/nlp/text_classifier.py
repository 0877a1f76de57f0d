"""A small text classifier trained through turn-over dropout, so that every training instance's influence can be read
off the trained network (koba_ros.nlp.influence).

Sentences become bags of hashed word unigrams and bigrams (crc32, so ids are the same in every process), averaged in
an embedding table (a fastText-style bag of n-grams), then one ReLU hidden layer and a linear output. Turn-over dropout
masks the averaged embedding and the hidden layer: nothing learned is shared between an instance's sub-network and its
flipped one except the output bias (koba_ros.nlp.turnover_dropout explains why that makes the influence exact).

Words are runs of letters, digits, combining marks and apostrophes in any script (ASCII text gives the [a-z0-9']+ runs
it always gave); in scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) every character is
a word, so the bigrams are character bigrams.
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata
import zlib
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from koba_ros.nlp.turnover_dropout import TurnOverDropout

_ASCII_WORD = re.compile(r"[a-z0-9']+")
# written without spaces between words: Thai and Lao, Myanmar, Khmer, kana, CJK ideographs (and their extensions)
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
             "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")


@functools.cache
def _unicode_word() -> re.Pattern:
    """One character of an unspaced script, or a run of letters, digits, combining marks (which \\w leaves out: the
    U+0308 of a decomposed 'naïve', Devanagari's vowel signs) and apostrophes, as one character class of ranges.
    Built once, on the first non-ASCII text (0.4 s)."""
    unspaced = re.compile(f"[{_UNSPACED}]")
    ranges, start = [], None
    for code in range(sys.maxunicode + 2):
        char = chr(code) if code <= sys.maxunicode else ""
        inside = bool(char) and (char.isalnum() or char == "'" or unicodedata.category(char)[0] == "M") \
            and not unspaced.match(char)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(re.escape(chr(start)) + (f"-{re.escape(chr(code - 1))}" if code - 1 > start else ""))
            start = None
    return re.compile(f"[{_UNSPACED}]|[{''.join(ranges)}]+")


def words(text: str) -> list[str]:
    """The lower-cased words of a text: [a-z0-9']+ runs for ASCII text; otherwise (NFC-normalised, U+2019 read as an
    apostrophe) runs of letters, digits, marks and apostrophes of any script, a character of an unspaced script
    alone. On ASCII characters both agree, so 'cup' is the same word in every line."""
    text = text.lower()
    if text.isascii():
        return _ASCII_WORD.findall(text)
    return _unicode_word().findall(unicodedata.normalize("NFC", text).replace("\u2019", "'"))


def ngram_ids(text: str, buckets: int) -> list[int]:
    """Hashed word unigrams and bigrams in 1 .. buckets - 1 (0 pads); at least one id, even for a text without words
    (has_words tells those apart)."""
    found = words(text)
    grams = found + [f"{a} {b}" for a, b in zip(found, found[1:], strict=False)]
    return [1 + zlib.crc32(g.encode()) % (buckets - 1) for g in grams] or [1 + zlib.crc32(b"<empty>") % (buckets - 1)]


def has_words(text: str) -> bool:
    """Whether a text has a word (else it is one shared "<empty>" n-gram, the same for every such text)."""
    return bool(words(text))


@dataclass(frozen=True)
class NgramBags:
    """Ragged n-gram ids, no padding: row i is ids[offsets[i]:offsets[i + 1]] (an EmbeddingBag's input and offsets).
    len() and indexing by rows (a slice, a list or tensor of indices, a boolean mask) work as on encode_texts' padded
    tensor, and the classifiers (TurnOverClassifier, instance_based's) take either (embed_bags); these cost what the
    ids cost, whatever the longest line."""
    ids: torch.Tensor       # [total] long
    offsets: torch.Tensor   # [N + 1] long: each row's start, then the end

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, rows) -> NgramBags:
        rows = torch.arange(len(self))[rows].reshape(-1)
        starts, lengths = self.offsets[:-1][rows], self.lengths()[rows]
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=offsets[1:])
        gather = torch.arange(int(offsets[-1])) + torch.repeat_interleave(starts - offsets[:-1], lengths)
        return NgramBags(self.ids[gather], offsets)

    def padded(self) -> torch.Tensor:
        """[N, longest] ids, right-padded with 0 (encode_texts' form)."""
        lengths = self.lengths()
        out = torch.zeros(len(self), int(lengths.max()) if len(self) else 1, dtype=torch.long)
        out[torch.arange(out.shape[1]) < lengths[:, None]] = self.ids
        return out


def encode_bags(texts: list[str], buckets: int) -> NgramBags:
    """Every text's n-gram ids (ngram_ids), ragged: memory in proportion to the ids, not to N times the longest."""
    rows = [ngram_ids(t, buckets) for t in texts]
    offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
    torch.cumsum(torch.tensor([len(r) for r in rows], dtype=torch.long), 0, out=offsets[1:])
    return NgramBags(torch.tensor([i for r in rows for i in r], dtype=torch.long), offsets)


def encode_texts(texts: list[str], buckets: int) -> torch.Tensor:
    """[N, longest] n-gram ids, right-padded with 0: N times the longest line's ids, so one very long line among many
    costs N times its length; encode_bags holds the same ids without padding (the classifier takes either)."""
    return encode_bags(texts, buckets).padded()


def embed_bags(embed: nn.EmbeddingBag, ngrams: torch.Tensor | NgramBags) -> torch.Tensor:
    """Averaged embeddings [N, E] of padded ids [N, L] or of NgramBags (the same numbers), for every bag-of-n-grams
    classifier. An id outside the table (texts encoded with other buckets: a raw IndexError) and an empty bag (no id
    but the padding 0: it averaged to zeros without a word) are refused in one line."""
    bags = isinstance(ngrams, NgramBags)
    ids = ngrams.ids if bags else ngrams
    outside = (ids < 0) | (ids >= embed.num_embeddings)
    if outside.any():
        raise ValueError(f"n-gram id {int(ids[outside][0])} is outside 0..{embed.num_embeddings - 1}; encode the "
                         f"texts with the classifier's buckets ({embed.num_embeddings})")
    if bags:  # a row's ids other than 0: the difference of their running count at its two offsets
        seen = torch.cat([ids.new_zeros(1), torch.cumsum(ids != 0, 0)])
        filled = seen[ngrams.offsets[1:]] > seen[ngrams.offsets[:-1]]
    else:
        filled = (ids != 0).any(-1)
    if not filled.all():
        raise ValueError("an empty bag of n-grams (a row with no id but the padding 0); ngram_ids gives every text at "
                         "least one")
    return embed(ids, ngrams.offsets[:-1]) if bags else embed(ids)


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

    def bag(self, ngrams: torch.Tensor | NgramBags) -> torch.Tensor:
        """Averaged embeddings [N, E] of padded ids [N, L] or of NgramBags (the same numbers)."""
        return embed_bags(self.embed, ngrams)

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


def check_class_indices(labels, classes: int) -> None:
    """Labels are class indices 0..classes-1 (one outside them is a raw error inside the loss, or in contextual
    augmentation another class's token, a special one or a word's id)."""
    bad = next((y for y in labels if not 0 <= y < classes), None)
    if bad is not None:
        raise ValueError(f"label {int(bad)} is outside 0..{classes - 1} ({classes} classes)")


def check_labels(ngrams, labels: torch.Tensor, classes: int) -> None:
    """One class index per text: more labels were ignored silently, fewer a raw IndexError in some batch."""
    if len(labels) != len(ngrams):
        raise ValueError(f"{len(labels)} labels for {len(ngrams)} texts; give one label per text")
    check_class_indices(labels, classes)


def fit_classifier(ngrams: torch.Tensor, labels: torch.Tensor, classes: int, config: ClassifierConfig,
                   seed: int = 0, instance_ids: torch.Tensor | None = None, masked: bool = True) -> TurnOverClassifier:
    """Each instance trains through its own turn-over mask. instance_ids (default 0..N-1) name the instances: keep an
    instance's id when the data set around it changes, and its mask stays the same. masked=False: a plain classifier
    of the same shape (every instance trains the whole network), which can memorise wrong labels."""
    if len(ngrams) == 0:
        raise ValueError("no training instances")
    check_labels(ngrams, labels, classes)
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
