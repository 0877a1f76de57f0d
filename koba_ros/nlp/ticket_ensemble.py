"""Multi-ticket ensembles from a user's own labelled lines: `koba lm tickets` builds one, `koba lm classify` uses it.

The method is lottery_tickets.py's (Kobayashi et al. 2022, the random-mask L1 term of its eq. in the module
docstring), on encoder_classifier.py's model: a word-level TextEncoder pretrained as a masked word LM on every text
given (the training lines, the validation lines and an optional unlabelled file, labels never used), then each
member fine-tuned as its own 30 %-sparse sub-network, and the members' softmaxes averaged.

A saved ensemble is a folder: `tickets.safetensors` (every member's weights, tensors only, so loading runs no code)
and `tickets.json` (vocabulary, labels, shapes, and what was measured when it was built).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from koba_ros.errors import KobaError
from koba_ros.nlp.contextual_augmentation import MAX_WORDS, Augmenter, AugmenterConfig, words_of
from koba_ros.nlp.encoder_classifier import (
    EncoderClassifier,
    FineTuneConfig,
    encode_words,
    fine_tune,
    pretrain_masked_lm,
)
from koba_ros.nlp.influence_report import output_folder, read_labelled, read_lines
from koba_ros.nlp.lottery_tickets import (
    ensemble_probabilities,
    find_ticket,
    full_masks,
    prunable_weights,
    sparsity_of,
)

WEIGHTS, META = "tickets.safetensors", "tickets.json"


def member_seed(seed: int, member: int) -> int:
    """Member `member`'s seed, seed * 100 + member, modulo 2**64: torch's seed range, in which it wraps
    (data.micro_seed's way). Every seed it was before stays the same; one from --seed 2**63 - 1 no longer overflows
    manual_seed after the pretraining."""
    return (seed * 100 + member) % 2**64


@dataclass
class TicketConfig:
    members: int = 4
    sparsity: float = 0.3       # share of the prunable weights each member prunes, in rounds of `rate`
    rate: float = 0.1
    l1: float = 1e-3            # lambda of the random-mask L1 term (0: plain tickets, members alike)
    l1_share: float = 0.5       # share of each matrix in a member's L1 selection R_k
    epochs: int = 20            # fine-tuning passes per round and for the final member
    pretrain_steps: int = 2000

    def validate(self) -> None:
        rounds = round(self.sparsity / self.rate) if self.rate > 0 else 0
        if self.members < 1 or self.epochs < 1 or self.pretrain_steps < 1:
            raise KobaError("tickets: --members, --epochs and --pretrain-steps must be at least 1")
        if not 0 < self.sparsity < 1 or rounds < 1 or abs(rounds * self.rate - self.sparsity) > 1e-9:
            raise KobaError(f"tickets: --sparsity {self.sparsity} must be in (0, 1) and a whole number of rounds "
                            f"of {self.rate}")
        if self.l1 < 0 or not 0 < self.l1_share <= 1:
            raise KobaError("tickets: --l1 must be >= 0 and the L1 share in (0, 1]")


def _encode(pretrained: Augmenter, texts: list[str]) -> torch.Tensor:
    try:
        return encode_words(pretrained, texts)
    except ValueError as exc:  # an unknown word or an empty / over-long sentence
        raise KobaError(f"classify: {exc}") from None


def build_ensemble(train: str, out: str, val: str = "", unlabelled: str = "", config: TicketConfig | None = None,
                   seed: int = 0) -> dict:
    """Pretrain, search a ticket per member (member_seed: seed*100 + k), fine-tune the members, save them to `out`;
    with `val`, also the accuracy of the ensemble and of its mean member there."""
    config = config or TicketConfig()
    config.validate()
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):  # checked before minutes of training
        raise KobaError(f"{folder} exists and is not an empty folder; give a new --out (an ensemble is never "
                        "written over other files)")
    rows = read_labelled(train)
    labels = sorted({label for _, label, _ in rows})
    if len(labels) < 2:
        raise KobaError(f"{train}: one label ({labels[0]!r}); a classifier needs at least two")
    index = {label: k for k, label in enumerate(labels)}
    val_rows = read_labelled(val) if val else []
    for path, table in ((train, rows), (val, val_rows)):
        for line, _, text in table:
            if not words_of(text):  # the encoder's words: contextual_augmentation.words_of
                raise KobaError(f"{path}:{line}: no words (letters or digits, in any script) in {text[:60]!r}")
            if len(words_of(text)) > MAX_WORDS:
                raise KobaError(f"{path}:{line}: {len(words_of(text))} words; a line may have at most {MAX_WORDS}")
    unseen = sorted({label for _, label, _ in val_rows} - set(labels))
    if unseen:
        raise KobaError(f"{val}: label {unseen[0]!r} never occurs in {train}")
    extra = []
    for line, text in enumerate(read_lines(unlabelled) if unlabelled else [], 1):
        if len(words_of(text)) > MAX_WORDS:
            raise KobaError(f"{unlabelled}:{line}: {len(words_of(text))} words; a sentence may have at most "
                            f"{MAX_WORDS} (split the text into sentences, one a line)")
        if words_of(text):
            extra.append(text.strip())
    texts = [t for _, _, t in rows] + [t for _, _, t in val_rows] + extra
    output_folder(folder, WEIGHTS)  # created and checked writable now, not after minutes of training
    pretrained = pretrain_masked_lm(texts, AugmenterConfig(steps=config.pretrain_steps), seed)
    x_train = _encode(pretrained, [t for _, _, t in rows])
    y_train = torch.tensor([index[label] for _, label, _ in rows])
    tune_config = FineTuneConfig(epochs=config.epochs)

    def tune(masks, penalty, seed_of_run):  # find_ticket adds 1000 per round: kept in torch's range too
        return fine_tune(pretrained, x_train, y_train, len(labels), tune_config, seed_of_run % 2**64, masks, penalty)

    dense = full_masks(prunable_weights(pretrained.encoder))
    members, sparsities = [], []
    for k in range(config.members):
        masks = find_ticket(tune, dense, config.sparsity, config.rate, config.l1, config.l1_share, member_seed(seed, k))
        members.append(tune(masks, None, member_seed(seed, k)))
        sparsities.append(round(sparsity_of(masks), 4))
    report = {"train": str(train), "lines": len(rows), "labels": len(labels), "members": config.members,
              "vocabulary": len(pretrained.words), "pretraining_texts": len(texts), "member_sparsity": sparsities}
    if val_rows:
        x_val = _encode(pretrained, [t for _, _, t in val_rows])
        y_val = torch.tensor([index[label] for _, label, _ in val_rows])
        with torch.no_grad():
            report["val"] = str(val)
            report["val_accuracy"] = round(float((ensemble_probabilities(members, x_val).argmax(-1) == y_val)
                                                 .float().mean()), 4)
            report["val_mean_member_accuracy"] = round(sum(float((m(x_val).argmax(-1) == y_val).float().mean())
                                                           for m in members) / len(members), 4)
    save_file({f"member{k}.{name}": p.detach().contiguous() for k, m in enumerate(members)
               for name, p in m.state_dict().items()}, folder / WEIGHTS)
    meta = {"labels": labels, "words": pretrained.words, "max_words": pretrained.encoder.config.max_len - 1,
            "encoder": asdict(pretrained.config), "config": asdict(config), "seed": seed, "report": report}
    (folder / META).write_text(json.dumps(meta, indent=1))
    return {**report, "out": str(folder)}


def load_ensemble(folder: str) -> tuple[Augmenter, list[EncoderClassifier], list[str]]:
    """(the vocabulary's encoder skeleton, the members, the labels) of a saved ensemble; one-line errors for a
    missing, foreign or corrupt folder (an edited tickets.json included: no members, or labels the heads lack)."""
    path = Path(folder)
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise KobaError(f"{folder}: not a ticket ensemble (needs {META} and {WEIGHTS}; made by koba lm tickets)")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        skeleton = Augmenter(meta["words"], 1, AugmenterConfig(**meta["encoder"]), meta["max_words"])
        tensors = load_file(path / WEIGHTS)
        count, labels = meta["config"]["members"], meta["labels"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise KobaError(f"{folder}: corrupt ticket ensemble (tickets.json: members must be a whole number >= 1, "
                            f"got {count!r})")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise KobaError(f"{folder}: corrupt ticket ensemble (tickets.json: labels must be a list of at least two "
                            "names)")
        heads = {tuple(t.shape) for n, t in tensors.items() if n.startswith("member") and n.endswith(".head.weight")}
        if any(shape[0] != len(labels) for shape in heads):
            raise KobaError(f"{folder}: corrupt ticket ensemble (tickets.json names {len(labels)} labels, the members' "
                            f"heads have {sorted(shape[0] for shape in heads)[0]})")
        members = []
        for k in range(count):
            member = EncoderClassifier(skeleton, len(meta["labels"]))
            prefix = f"member{k}."
            member.load_state_dict({n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)})
            members.append(member.eval())
    except (SafetensorError, json.JSONDecodeError, KeyError, TypeError, RuntimeError, OSError) as exc:
        raise KobaError(f"{folder}: corrupt ticket ensemble ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                        ) from None
    return skeleton, members, meta["labels"]


def classify(folder: str, texts: list[str]) -> list[dict]:
    """The ensemble's label and probability (mean of the members' softmaxes) for each text."""
    if not texts:
        raise KobaError("classify: give at least one text")
    skeleton, members, labels = load_ensemble(folder)
    probs = ensemble_probabilities(members, _encode(skeleton, texts))
    best = probs.argmax(-1)
    return [{"text": t, "label": labels[int(b)], "probability": round(float(p[b]), 4)}
            for t, p, b in zip(texts, probs, best, strict=True)]
