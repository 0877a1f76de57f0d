"""Metadata conditioning (Higuchi et al. 2025, arXiv 2504.17562): prepending metadata to pre-training text helps a
model whose prompt is long enough to infer the latent semantics, and hurts one whose prompt is too short for it.

Data (nlp/pcfg.py): sentences of a layered PCFG whose every level has two rule sets; a sentence's latent
semantics is its choice j in {0, 1}^D. Every training sequence starts with D prefix slots, and the arms (ARMS)
differ only in what those slots hold:
  none:        D MASK tokens, always;
  top_level, all_levels: for a share META_SHARE of the sentences, the first D_M slots (1 or D) carry j_0 ..
               j_{D_M - 1} as tokens (one token per level and value) and the rest MASK; the other sentences get D
               MASK tokens, as in the paper's mix of metadata-prefixed and fully masked sentences;
  all_levels_cooldown: all_levels, then the last 10 % of the steps without metadata (MeCo, Gao et al. 2025);
  none_masked_half_only: none, with the sentences the metadata arms prefix left out of the loss (a control).
The loss counts terminals and the end token only (§3 of the paper). Every arm sees the same sentences in the same
order; every evaluation prompt starts with D MASK tokens (no metadata at inference).

Measured, per prompt length L (the first L terminals of a held-out sentence):
  grammatical_accuracy: a continuation sampled at temperature 1 makes the whole a sentence of the grammar (under
                        some j); also split by the exact posterior p(true j | prompt) (latent inferable or not);
  probe_accuracy:       linear probes (one per level) predict j_d from the last prompt token's final hidden state;
  and the mean next-token loss of held-out sentences without metadata (and, for the metadata arms, with it),
  beside the grammar's own loss (grammar_losses).
The paper's claim: metadata lowers grammatical and probe accuracy at short prompts and raises grammatical accuracy
at long ones, while the average loss without metadata hardly moves. Measured at full size (docs/nlp.md "Session
16", 3 seeds): lower at short prompts, reproduced; higher at long ones, not reproduced; probes unchanged.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.pcfg import LayeredGrammar
from koba_ros.nlp.repro.common import fit, save_plot

SIZES = {
    "test": dict(depth=4, symbols=3, terminals=8, d_model=64, n_layers=2, n_heads=2, batch=32, steps=600, lr=3e-3,
                 train_sentences=4000, test_sentences=600, probe_sentences=600, seeds=1,
                 arms={"none": (0, 0.0, False), "all_levels": (None, 0.0, False)}),
    "full": dict(depth=4, symbols=3, terminals=8, d_model=64, n_layers=2, n_heads=2, batch=32, steps=6000, lr=3e-3,
                 train_sentences=20000, test_sentences=1000, probe_sentences=2000, seeds=3),
}
SIZES["quick"] = SIZES["test"]
# arm: (how many levels' choices the metadata tokens carry, D_M in the paper, None: all D levels;
#       the share of the last training steps that see no metadata at all, MeCo's "cooldown" (Gao et al. 2025);
#       True: the sentences the metadata arms prefix are left out of the loss, a control that trains only what
#       those arms train without metadata)
ARMS = {"none": (0, 0.0, False), "top_level": (1, 0.0, False), "all_levels": (None, 0.0, False),
        "all_levels_cooldown": (None, 0.1, False), "none_masked_half_only": (0, 0.0, True)}
PROMPT_LENGTHS = (1, 2, 4, 8, 16, 32)
META_SHARE = 0.5
INFERABLE, NOT_INFERABLE = 0.9, 0.5  # p(true j | prompt) at or above / below: the latent can / cannot be inferred


class Vocabulary:
    """Terminals 0 .. T-1, then EOS, MASK, and one token per (level, value) of the metadata."""

    def __init__(self, grammar: LayeredGrammar):
        self.depth = grammar.depth
        self.eos = grammar.terminals
        self.mask = grammar.terminals + 1
        self.size = grammar.terminals + 2 + 2 * grammar.depth

    def metadata(self, level: int, value: int) -> int:
        return self.eos + 2 + 2 * level + value

    def prefix(self, j, levels: int) -> list[int]:
        return [self.metadata(d, j[d]) if d < levels else self.mask for d in range(self.depth)]

    def prompt_ids(self, prompts: list[list[int]], device) -> torch.Tensor:
        """Equal-length evaluation prompts [B, D + L]: D MASK tokens (no metadata), then the terminals."""
        return torch.tensor([[self.mask] * self.depth + p for p in prompts], device=device)


def training_batch(sentences, prefixes, indices, vocab: Vocabulary, max_len: int):
    """(x, y) for the sentences at `indices`: prefix + terminals + EOS, padded; targets -100 on the prefix's own
    tokens and the padding (the first terminal is predicted from the last prefix slot)."""
    x = torch.full((len(indices), max_len), vocab.eos)
    y = torch.full((len(indices), max_len), -100)
    for row, i in enumerate(indices):
        seq = prefixes[i] + sentences[i] + [vocab.eos]
        x[row, :len(seq) - 1] = torch.tensor(seq[:-1])
        y[row, vocab.depth - 1:len(seq) - 1] = torch.tensor(seq[vocab.depth:])
    return x, y


@torch.no_grad()
def sentence_loss(model, sentences, prefixes, vocab, max_len, device) -> float:
    model.eval()
    total = tokens = 0.0
    for start in range(0, len(sentences), 256):
        idx = list(range(start, min(start + 256, len(sentences))))
        x, y = training_batch(sentences, prefixes, idx, vocab, max_len)
        logits = model(x.to(device))[0].float()
        keep = y.to(device) != -100
        total += float(F.cross_entropy(logits[keep], y.to(device)[keep], reduction="sum"))
        tokens += int(keep.sum())
    model.train()
    return total / tokens


@torch.no_grad()
def sample_continuations(model, prompts: torch.Tensor, max_new: int, eos: int,
                         generator) -> list[list[int] | None]:
    """Temperature-1 continuations of equal-length prompts [B, P], up to and without EOS (None: no EOS drawn)."""
    model.eval()
    cache = KVCache(model.config.n_layers, prompts.shape[1] + max_new)
    logits = model(prompts, cache=cache)[0][:, -1].float()
    drawn, done = [], torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new):
        token = torch.multinomial(torch.softmax(logits.cpu(), -1), 1, generator=generator)[:, 0]
        drawn.append(torch.where(done, eos, token))
        done |= token == eos
        if bool(done.all()):
            break
        logits = model(token[:, None].to(prompts.device), cache=cache)[0][:, -1].float()
    model.train()
    out = []
    for row in torch.stack(drawn, 1).tolist():
        out.append(row[:row.index(eos)] if eos in row else None)
    return out


def grammatical(model, grammar, prompts: list[list[int]], vocab, L: int, device, generator) -> list[bool]:
    """For each prompt (L terminals): does a sampled continuation make the whole a sentence of the grammar?"""
    continuations = sample_continuations(model, vocab.prompt_ids(prompts, device), grammar.max_length - L + 1,
                                         vocab.eos, generator)
    return [c is not None and bool(grammar.choices_deriving(p + c)) for p, c in zip(prompts, continuations,
                                                                                   strict=True)]


@torch.no_grad()
def last_prompt_states(model, prompts, vocab, device) -> torch.Tensor:
    model.eval()
    ids = vocab.prompt_ids(prompts, device)
    states = torch.cat([model.hidden(ids[i:i + 512])[:, -1].float().cpu() for i in range(0, len(ids), 512)])
    model.train()
    return states


def probe_accuracy(train_h, train_j, test_h, test_j, l2: float = 1e-3) -> list[float]:
    """One logistic regression per level on standardised features (full-batch L-BFGS); held-out accuracy each."""
    mean, std = train_h.mean(0), train_h.std(0) + 1e-6
    a, b = (train_h - mean) / std, (test_h - mean) / std
    w = torch.zeros(a.shape[1], train_j.shape[1], requires_grad=True)
    bias = torch.zeros(train_j.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a @ w + bias, train_j.float()) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return [round(float(v), 4) for v in (((b @ w + bias) > 0) == test_j.bool()).float().mean(0)]


def grammar_losses(grammar: LayeredGrammar, test) -> dict:
    """The ideal model's loss on the held-out sentences (nats per terminal and end token): without metadata
    (-log p(sentence), the latent marginalised) and given every level's choice (-log p(sentence | j))."""
    tokens = sum(len(t) + 1 for _, t in test)
    return {"without_metadata": round(-sum(grammar.log_probability(t) for _, t in test) / tokens, 4),
            "given_latent": round(-sum(math.log(grammar.probability(t, j)) for j, t in test) / tokens, 4)}


def one_seed(s: dict, seed: int, device: str) -> dict:
    grammar = LayeredGrammar.random(s["depth"], s["symbols"], s["terminals"], seed=seed)
    vocab = Vocabulary(grammar)
    rng = random.Random(seed)
    draws = [grammar.sample(rng) for _ in range(s["train_sentences"] + s["test_sentences"])]
    train, test = draws[:s["train_sentences"]], draws[s["train_sentences"]:]
    train_sentences = [t for _, t in train]
    with_meta = [rng.random() < META_SHARE for _ in train]
    max_len = s["depth"] + grammar.max_length + 1
    order = torch.randint(len(train), (s["steps"], s["batch"]), generator=torch.Generator().manual_seed(seed))
    # the evaluation prompts, the same for every arm: the first L terminals of each longer held-out sentence, and
    # how well they determine the latent (the posterior of the sentence's own j under the true grammar)
    prompts = {L: [(j, t[:L]) for j, t in test if len(t) > L] for L in PROMPT_LENGTHS}
    posterior = {L: [grammar.posterior(p)[j] for j, p in prompts[L]] for L in PROMPT_LENGTHS}
    probe_fit = {L: [(j, t[:L]) for j, t in train[:s["probe_sentences"]] if len(t) > L] for L in PROMPT_LENGTHS}
    results = {}
    masked = [vocab.prefix(j, 0) for j, _ in train]
    for arm, (levels, cooldown, masked_half_only) in s.get("arms", ARMS).items():
        levels = s["depth"] if levels is None else levels
        prefixes = [vocab.prefix(j, levels if m else 0) for (j, _), m in zip(train, with_meta, strict=True)]
        plain_from = round(s["steps"] * (1 - cooldown))

        def batch(step, prefixes=prefixes, plain_from=plain_from, masked_half_only=masked_half_only):
            rows = order[step].tolist()
            x, y = training_batch(train_sentences, prefixes if step < plain_from else masked, rows, vocab, max_len)
            if masked_half_only:
                y[torch.tensor([with_meta[i] for i in rows])] = -100
            return x, y

        torch.manual_seed(seed)
        config = TransformerConfig(vocab_size=vocab.size, d_model=s["d_model"], n_layers=s["n_layers"],
                                   n_heads=s["n_heads"], max_len=max_len, positions="rope", pad_id=vocab.eos)
        model = TransformerLM(config)
        run = fit(model, batch, s["steps"], s["lr"], device, warmup=s["steps"] // 10)
        r = {"final_train_loss": round(sum(run["losses"][-20:]) / 20, 4)}
        for name, given in (("without", 0), ("with", levels)):
            if name == "without" or levels:
                r[f"test_loss_{name}_metadata"] = round(sentence_loss(
                    model, [t for _, t in test], [vocab.prefix(j, given) for j, _ in test], vocab, max_len, device), 4)
        generator = torch.Generator().manual_seed(seed + 1)
        r["grammatical_accuracy"], r["probe_accuracy"], r["probe_accuracy_per_level"] = {}, {}, {}
        by_certainty = {"inferable": [], "not_inferable": []}
        for L in PROMPT_LENGTHS:
            ok = grammatical(model, grammar, [p for _, p in prompts[L]], vocab, L, device, generator)
            r["grammatical_accuracy"][L] = round(sum(ok) / len(ok), 4)
            for good, certainty in zip(ok, posterior[L], strict=True):
                if certainty >= INFERABLE or certainty < NOT_INFERABLE:
                    by_certainty["inferable" if certainty >= INFERABLE else "not_inferable"].append(good)
            per_level = probe_accuracy(
                last_prompt_states(model, [p for _, p in probe_fit[L]], vocab, device),
                torch.tensor([j for j, _ in probe_fit[L]]),
                last_prompt_states(model, [p for _, p in prompts[L]], vocab, device),
                torch.tensor([j for j, _ in prompts[L]]))
            r["probe_accuracy_per_level"][L] = per_level
            r["probe_accuracy"][L] = round(sum(per_level) / len(per_level), 4)
        r["grammatical_accuracy_by_latent"] = {k: round(sum(v) / max(1, len(v)), 4) for k, v in by_certainty.items()}
        r["prompts_by_latent"] = {k: len(v) for k, v in by_certainty.items()}
        results[arm] = r
    lengths = [len(t) for _, t in test]
    return {"sentence_length": [min(lengths), round(sum(lengths) / len(lengths), 1), max(lengths)],
            "posterior_of_true_latent": {L: round(sum(v) / len(v), 4) for L, v in posterior.items()},
            "grammar_loss": grammar_losses(grammar, test),
            "arms": results}


def run(quick: bool, device: str, out, seed: int = 0, size: str | None = None) -> dict:
    s = SIZES[size or ("quick" if quick else "full")]
    per_seed = {str(seed + i): one_seed(s, seed + i, device) for i in range(s["seeds"])}
    return {"size": size or ("quick" if quick else "full"), **summarise(s, per_seed, out)}


def summarise(s: dict, per_seed: dict, out) -> dict:
    """Means over seeds, each metadata arm's seed-by-seed differences from "none", and the plot."""
    arms = list(s.get("arms", ARMS))

    def mean(values):
        values = list(values)
        return round(sum(values) / len(values), 4)

    summary = {}
    for arm in arms:
        rows = [r["arms"][arm] for r in per_seed.values()]
        summary[arm] = {key: {L: mean(row[key][L] for row in rows) for L in PROMPT_LENGTHS}
                        for key in ("grammatical_accuracy", "probe_accuracy")}
        summary[arm]["grammatical_accuracy_by_latent"] = {
            k: mean(row["grammatical_accuracy_by_latent"][k] for row in rows) for k in ("inferable", "not_inferable")}
        summary[arm]["test_loss_without_metadata"] = mean(row["test_loss_without_metadata"] for row in rows)
    differences = {}
    for arm in arms[1:]:  # each metadata arm against "none", seed by seed
        rows = [(r["arms"][arm], r["arms"]["none"]) for r in per_seed.values()]
        differences[arm] = {
            "grammatical_accuracy": {L: [round(a["grammatical_accuracy"][L] - b["grammatical_accuracy"][L], 4)
                                         for a, b in rows] for L in PROMPT_LENGTHS},
            "grammatical_accuracy_by_latent": {
                k: [round(a["grammatical_accuracy_by_latent"][k] - b["grammatical_accuracy_by_latent"][k], 4)
                    for a, b in rows] for k in ("inferable", "not_inferable")},
            "probe_accuracy": {L: [round(a["probe_accuracy"][L] - b["probe_accuracy"][L], 4) for a, b in rows]
                               for L in PROMPT_LENGTHS},
            "test_loss_without_metadata": [round(a["test_loss_without_metadata"] - b["test_loss_without_metadata"],
                                                 4) for a, b in rows]}
    plot = save_plot(out / "metadata.png", [
        {"title": "grammatical continuations", "xlabel": "prompt length (terminals)", "ylabel": "accuracy",
         "series": {arm: (list(PROMPT_LENGTHS), list(summary[arm]["grammatical_accuracy"].values()))
                    for arm in arms}},
        {"title": "linear probe for the latent rule choice", "xlabel": "prompt length (terminals)",
         "ylabel": "accuracy", "series": {arm: (list(PROMPT_LENGTHS), list(summary[arm]["probe_accuracy"].values()))
                                          for arm in arms}},
        {"title": "grammatical, by p(true latent | prompt)", "xlabel": f"0: below {NOT_INFERABLE}, 1: at least "
         f"{INFERABLE}", "ylabel": "accuracy",
         "series": {arm: ([0, 1], [summary[arm]["grammatical_accuracy_by_latent"][k]
                                   for k in ("not_inferable", "inferable")]) for arm in arms}},
    ], f"metadata conditioning (mean of {s['seeds']} seeds; no metadata at inference)")
    return {"settings": {**s, "arms": dict(s.get("arms", ARMS)),
                         "meta_share": META_SHARE, "prompt_lengths": PROMPT_LENGTHS,
                         "inferable_at_least": INFERABLE, "not_inferable_below": NOT_INFERABLE},
            "summary": summary, "metadata_minus_none": differences, "seeds": per_seed, "plot": plot}
