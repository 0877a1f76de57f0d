"""`koba lm influence`: which lines of a labelled text set look mislabeled, and which hurt a clean validation set.

Input: UTF-8 text files of `label<TAB>text` lines (blank lines and comment lines, a # with no tab in the line, are
skipped; a leading byte-order mark is dropped; lines end at \n, \r\n or \r only), in any script
(text_classifier.words). One classifier
is trained through turn-over dropout (koba_ros.nlp.text_classifier), then every training line gets its self-influence
(high: the model had to memorise it, the signature of a wrong label) and, with --val, its influence on the validation
set (negative: learning it raised the validation loss). The CSV lists every training line with both, most suspicious
first; nothing in the input is changed.
"""
from __future__ import annotations

import csv
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.influence import influence_on, most_harmful, self_influence
from koba_ros.nlp.text_classifier import ClassifierConfig, accuracy, encode_bags, fit_classifiers, has_words


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file, without a leading byte-order mark (an editor's U+FEFF would otherwise begin the
    first label); one-line errors for a missing file or other bytes. Lines end at \n, \r\n or \r only:
    str.splitlines also cut at U+2028, U+0085, form feeds and \x1c-\x1e, splitting a valid line in two (and
    numbering the lines after it wrong)."""
    path = Path(path)
    if not path.is_file():
        raise KobaError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KobaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines  # a final newline ends the last line, it starts none


def read_labelled(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, label, text) for each `label<TAB>text` line. A line starting with # is a comment only if it has
    no tab: "#sports<TAB>..." is a labelled line (it was skipped silently before session 29). The comments skipped
    are counted in a note on stderr."""
    path = Path(path)
    lines = read_lines(path)
    rows, comments = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith("#") and "\t" not in line:
            comments += 1
            continue
        label, tab, text = line.partition("\t")
        if not tab or not label.strip() or not text.strip():
            raise KobaError(f"{path}:{number}: expected 'label<TAB>text', got {line[:60]!r}")
        rows.append((number, label.strip(), text.strip()))
    skipped = f"skipped {comments} comment line(s) (# with no tab)"
    if not rows:
        raise KobaError(f"{path}: no labelled lines" + (f" ({skipped})" if comments else ""))
    if comments:
        print(f"koba lm: {path}: {skipped}", file=sys.stderr, flush=True)
    return rows


def wordless(path: str | Path, rows: list[tuple[int, str, str]]) -> list[int]:
    """The numbers of the lines without a word (only emoji or punctuation now that every script has words), said in
    one note: they share one "<empty>" n-gram, as before, and stay in the ranking (refusing the whole run for one
    "👍" line, as a first version of session 25 did, refused data that had worked)."""
    numbers = [number for number, _, text in rows if not has_words(text)]
    if numbers:
        print(f"koba lm influence: {len(numbers)} line(s) of {path} have no words (first: line {numbers[0]}); "
              "they share one feature", file=sys.stderr, flush=True)
    return numbers


def output_folder(out: str | Path, name: str) -> Path:
    """`out`, created (or an existing folder), and the path of `name` in it, checked before any work: a file where
    the folder should be is a one-line error now, not after minutes of training."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KobaError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    target = folder / name
    if target.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise KobaError(f"cannot write {target}: " + ("a folder is in the way" if target.is_dir() else
                                                       "the folder is not writable"))
    return target


def influence_report(train: str, out: str, val: str = "", config: ClassifierConfig | None = None,
                     seed: int = 0, mask_seeds: int = 1) -> dict:
    """mask_seeds > 1: that many classifiers with independent masks, their estimates averaged (influence.averaged)."""
    config = config or ClassifierConfig()
    rows = read_labelled(train)
    classes = sorted({label for _, label, _ in rows})
    if len(classes) < 2:
        raise KobaError(f"{train}: one label ({classes[0]!r}); influence needs at least two classes")
    no_words = wordless(train, rows)
    index = {c: k for k, c in enumerate(classes)}
    val_rows = read_labelled(val) if val else []
    unknown = sorted({label for _, label, _ in val_rows} - set(classes))
    if unknown:
        raise KobaError(f"{val}: label {unknown[0]!r} never occurs in {train}")
    val_no_words = wordless(val, val_rows) if val else []
    if mask_seeds < 1:
        raise KobaError(f"influence: --mask-seeds must be at least 1, got {mask_seeds}")
    csv_path = output_folder(out, "influence.csv")
    ngrams = encode_bags([t for _, _, t in rows], config.buckets)  # ragged: one long line costs its own ids only
    labels = torch.tensor([index[label] for _, label, _ in rows])
    try:
        models = fit_classifiers(ngrams, labels, len(classes), config, seed, mask_seeds)
    except RuntimeError as exc:  # torch's allocator: --embed / --hidden too large for this machine's memory
        if "alloc" not in str(exc).lower():
            raise
        raise KobaError(f"influence: not enough memory for --embed {config.embed} --hidden {config.hidden} "
                        f"({config.buckets} buckets); use smaller ones") from None
    model = models[0]
    ids = torch.arange(len(rows))
    own = self_influence(models, ngrams, labels, ids)
    result = {"train": str(train), "lines": len(rows), "classes": len(classes), "config": asdict(config),
              "mask_seeds": mask_seeds, "train_accuracy": round(accuracy(model, ngrams, labels), 4),
              "lines_without_words": len(no_words) + len(val_no_words)}
    on_val = None
    if val_rows:
        val_ngrams = encode_bags([t for _, _, t in val_rows], config.buckets)
        val_labels = torch.tensor([index[label] for _, label, _ in val_rows])
        on_val = influence_on(models, ids, val_ngrams, val_labels)
        result.update(val=str(val), val_lines=len(val_rows), val_accuracy=round(accuracy(model, val_ngrams,
                                                                                         val_labels), 4),
                      harmful_to_val=int((on_val < 0).sum()))
    order = torch.argsort(own, descending=True).tolist()
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["line", "label", "text", "self_influence", *(["val_influence"] if on_val is not None else [])])
        for k in order:
            number, label, text = rows[k]
            writer.writerow([number, label, text, f"{own[k].item():.6g}",
                             *([f"{on_val[k].item():.6g}"] if on_val is not None else [])])
    result["csv"] = str(csv_path)
    result["most_suspicious"] = [{"line": rows[k][0], "label": rows[k][1], "text": rows[k][2],
                                  "self_influence": round(own[k].item(), 4)} for k in order[:10]]
    if on_val is not None:  # only lines that raise the validation loss (none: an empty list)
        result["most_harmful"] = [{"line": rows[k][0], "label": rows[k][1], "text": rows[k][2],
                                   "val_influence": round(on_val[k].item(), 4)}
                                  for k in most_harmful(on_val, 10).tolist()]
    return result
