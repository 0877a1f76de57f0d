"""Which training documents of a language model help or hurt it on a target text: turn-over dropout's influence
(Kobayashi et al. 2020; koba_ros.nlp.turnover_dropout) read from a `koba lm train` run with `model.turnover_p > 0`.

Such a run trains every token through its document's mask on each FFN's hidden units (documents are the eos-ended
pieces of the training stream: the files of a collection). For document d and a target text z,

    I(z, d) = L(z; f^(1 - m_d)) - L(z; f^(m_d))      (nats per target token)

compares the sub-network that never learned d with the one that did: positive, d taught the model something the
target needs; negative, d pulled it away from the target. Self-influence I(d, d) is how much d had to be memorised
(duplicates score low, one-of-a-kind or garbled documents high).

Unlike the classifier (text_classifier.py), a transformer shares its attention, embeddings and LayerNorms between
the two sub-networks, so they are not disjoint: the estimate covers what a document taught the FFNs. Cost: two
scoring passes over the target per training document.

Several runs on the same documents with different `model.turnover_seed` give independent estimates (each document
split into other halves); their mean cuts the chance differences between two half-networks (as `--mask-seeds` does
for the classifier, influence.averaged).
"""
from __future__ import annotations

import csv
import math

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.data import documents_with_files, is_collection
from koba_ros.nlp.evaluation import score, text_tokens
from koba_ros.nlp.influence_report import output_folder
from koba_ros.nlp.prepared import token_stream
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.warm_start import weights_turnover


def training_documents(trained) -> tuple[list[torch.Tensor], list[str]]:
    """The training split's documents, in the order (and so with the ids) training gave them, and their names (the
    collection's files; `document d` where the stream has no file names)."""
    config = trained.config
    eos = getattr(trained.tokenizer, "eos_id", None)
    stream = token_stream(config["train_data"], trained.tokenizer, config.get("tokenizer", "byte"),
                          int(config["seq_len"]))
    if not config.get("val_data"):
        stream, _ = stream.split(float(config.get("val_fraction", 0.1)))
    tokens = torch.as_tensor(stream.tokens[:]).long()
    starts, ends = stream.document_bounds(eos, trained.eos_starts)  # `E a E b` with eos_starts: each eos is a bos
    documents = [tokens[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    names = [f"document {d}" for d in range(len(documents))]
    if is_collection(config["train_data"]):  # the stream holds the non-empty files only
        files = [path for path, _ in documents_with_files(config["train_data"])]
        names = [str(files[d]) if d < len(files) else names[d] for d in range(len(documents))]
    return documents, names


def load_runs(checkpoints: list[str], device: str):
    """The runs, each trained with turn-over dropout, and their shared training documents; several runs must have
    trained on the same documents (token for token) with different mask seeds. Documents are read from each run's
    `train_data` as it is on disk now (a checkpoint keeps no copy), so the data must not have changed since."""
    runs, documents, names = [], None, None
    for checkpoint in checkpoints:
        trained = load_trained(checkpoint, device)
        if not trained.model.config.turnover_p:
            raise KobaError(f"{trained.path}: trained without turn-over dropout; train with model.turnover_p: 0.5 "
                            "(and a collection of documents) to read influence from it")
        # Weights init_from gave that a turn-over run trained hold its documents' masks: the half-networks of this
        # run's document d differ by what they taught too (with its seed, exactly the source's document d's), and a
        # fresh seed does not undo that.
        ancestors = weights_turnover(trained.path)
        if ancestors:
            raise KobaError(f"{trained.path}: the weights it started from (init_from) were trained with turn-over "
                            f"dropout by {ancestors[-1]['run']}, whose masks split each FFN by that run's documents, "
                            "so influence here would mix theirs into this run's whatever turnover_seed it used; read "
                            "influence from a run trained with turnover_p from scratch (or from a source without it)")
        docs, doc_names = training_documents(trained)
        if documents is None:
            documents, names = docs, doc_names
        elif len(docs) != len(documents) or any(not torch.equal(a, b) for a, b in zip(docs, documents, strict=True)):
            raise KobaError(f"{trained.path}: trained on other documents than {runs[0].path}; averaged influence "
                            "needs runs on the same training data")
        runs.append(trained)
    seeds = [r.model.config.turnover_seed for r in runs]
    if len(set(seeds)) < len(seeds):
        raise KobaError(f"runs share a model.turnover_seed ({seeds}): their masks are the same, so averaging them "
                        "cuts nothing; train each with its own seed")
    if len(documents) < 2:
        raise KobaError(f"{runs[0].config['train_data']}: one training document; influence needs a collection "
                        "(a folder or glob of files, each a document)")
    return runs, documents, names


def document_influence(checkpoint: str | list[str], target: str, out: str, batch_size: int = 8,
                       device: str = "cpu") -> dict:
    """Every training document's influence on `target` and its self-influence, from one run or the mean over
    several runs with different mask seeds; a CSV sorted most helpful first."""
    checkpoints = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    runs, documents, names = load_runs(checkpoints, device)
    target_tokens, _ = text_tokens(target, runs[0])
    if target_tokens.numel() < 2:
        raise KobaError(f"{target}: fewer than two tokens to score")
    csv_path = output_folder(out, "document_influence.csv")  # a bad --out now, not after every document's passes

    def per_token(trained, tokens, d=None, flip=False):
        eos = trained.document_eos
        seq_len = int(trained.config["seq_len"])
        nats, count = score(trained.model, tokens, seq_len, seq_len, batch_size, eos, instance=d, flip=flip,
                            eos_starts=trained.eos_starts)
        return nats / count

    def influence(tokens, d):
        """I(tokens, d), averaged over the runs."""
        return sum(per_token(r, tokens, d, True) - per_token(r, tokens, d, False) for r in runs) / len(runs)

    rows = []
    for d, (doc, name) in enumerate(zip(documents, names, strict=True)):
        rows.append({"document": d, "name": name, "tokens": doc.numel(),
                     "influence_on_target": influence(target_tokens, d),
                     "self_influence": influence(doc, d) if doc.numel() >= 2 else math.nan})
    rows.sort(key=lambda r: -r["influence_on_target"])
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "influence_on_target": f"{r['influence_on_target']:.6g}",
                          "self_influence": f"{r['self_influence']:.6g}"} for r in rows)

    def brief(r):
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}

    return {"checkpoint": str(runs[0].path) if len(runs) == 1 else [str(r.path) for r in runs], "target": target,
            "target_loss": round(sum(per_token(r, target_tokens) for r in runs) / len(runs), 6),
            "documents": len(rows), "harmful": sum(r["influence_on_target"] < 0 for r in rows),
            "csv": str(csv_path), "most_helpful": [brief(r) for r in rows[:10]],
            "most_harmful": [brief(r) for r in rows[::-1][:10]]}
