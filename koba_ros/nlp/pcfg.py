"""Layered probabilistic context-free grammars with latent rule choices: the synthetic data of Higuchi et al. 2025
("When does metadata conditioning (not) work for language model pre-training? A study with context-free grammars",
arXiv 2504.17562, §2).

A grammar has `depth` levels of nonterminals. Level 0 holds the start symbol; a level-d symbol rewrites to 2 or 3
symbols of level d + 1, and a symbol of the last level to 2 or 3 terminals. Every level has two rule sets, and one
sentence uses one latent choice j = (j_0, ..., j_{D-1}) in {0, 1}^D throughout: all its level-d rewrites come from
rule set j_d. j is the sentence's "latent semantics"; prepending (part of) it is the metadata.

Which j generated a sentence can only be inferred from enough of it: the lowest level's choice shows in a few
terminals, the top level's in the sentence's coarse shape. `derives` checks whether a token sequence is a sentence
of the grammar under some j (the "grammatical accuracy" of a model's continuations).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

from koba_ros.errors import KobaError

Rule = tuple[tuple[int, ...], float]  # (right-hand side, probability)


@dataclass(frozen=True)
class LayeredGrammar:
    depth: int
    symbols: int        # nonterminals per level (level 0 uses symbol 0 only)
    terminals: int
    rules: tuple        # rules[d][j][a]: the rules of level-d symbol a under rule set j, a tuple of Rule

    @staticmethod
    def random(depth: int = 4, symbols: int = 3, terminals: int = 8, rules_per_symbol: int = 2,
               seed: int = 0) -> LayeredGrammar:
        """Random right-hand sides (length 2 or 3, uniform) and probabilities (Dirichlet(1)), drawn independently
        for both rule sets of every level, so each choice of j has its own grammar."""
        if depth < 1 or symbols < 1 or terminals < 2 or rules_per_symbol < 1:
            raise KobaError(f"grammar: impossible shape depth={depth} symbols={symbols} terminals={terminals} "
                             f"rules_per_symbol={rules_per_symbol}")
        rng = random.Random(seed)
        levels = []
        for d in range(depth):
            below = terminals if d == depth - 1 else symbols
            rule_sets = []
            for _j in range(2):
                per_symbol = []
                for _a in range(symbols):
                    weights = [rng.expovariate(1.0) for _ in range(rules_per_symbol)]
                    rhs = [tuple(rng.randrange(below) for _ in range(rng.choice((2, 3))))
                           for _ in range(rules_per_symbol)]
                    per_symbol.append(tuple((r, w / sum(weights)) for r, w in zip(rhs, weights, strict=True)))
                rule_sets.append(tuple(per_symbol))
            levels.append(tuple(rule_sets))
        return LayeredGrammar(depth, symbols, terminals, tuple(levels))

    @property
    def max_length(self) -> int:
        return 3 ** self.depth

    def sample(self, rng: random.Random, choice: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], list[int]]:
        """(j, terminals) with j uniform over {0, 1}^D unless given."""
        j = tuple(rng.randrange(2) for _ in range(self.depth)) if choice is None else tuple(choice)
        frontier = [0]
        for d in range(self.depth):
            expanded = []
            for a in frontier:
                options = self.rules[d][j[d]][a]
                rhs = rng.choices([r for r, _ in options], weights=[p for _, p in options])[0]
                expanded.extend(rhs)
            frontier = expanded
        return j, frontier

    def derives(self, tokens, choice: tuple[int, ...]) -> bool:
        """Is `tokens` a whole sentence of the grammar under latent choice `choice`? (memoised top-down parse:
        which end positions a level-d symbol can reach from a start position)"""
        tokens = tuple(tokens)
        n = len(tokens)

        @cache
        def ends(d: int, a: int, start: int) -> frozenset:
            reached = set()
            for rhs, _ in self.rules[d][choice[d]][a]:
                if d == self.depth - 1:
                    if tokens[start:start + len(rhs)] == rhs:
                        reached.add(start + len(rhs))
                    continue
                positions = {start}
                for b in rhs:
                    positions = {e for p in positions if p < n for e in ends(d + 1, b, p)}
                    if not positions:
                        break
                reached |= positions
            return frozenset(reached)

        return n in ends(0, 0, 0)

    def probability(self, tokens, choice: tuple[int, ...]) -> float:
        """p(tokens is the whole sentence | j): the inside algorithm over the same memoised parse as `derives`."""
        tokens = tuple(tokens)

        @cache
        def inside(d: int, a: int, start: int) -> dict:
            return self._inside_spans(tokens, choice, d, a, start, inside)

        return inside(0, 0, 0).get(len(tokens), 0.0)

    def _inside_spans(self, tokens, choice, d: int, a: int, start: int, inside) -> dict[int, float]:
        """{end: p(level-d symbol a yields exactly tokens[start:end])}; `inside` is the memoised recursion."""
        n = len(tokens)
        reached: dict[int, float] = {}
        for rhs, p in self.rules[d][choice[d]][a]:
            if d == self.depth - 1:
                if tokens[start:start + len(rhs)] == rhs:
                    reached[start + len(rhs)] = reached.get(start + len(rhs), 0.0) + p
                continue
            positions = {start: p}
            for b in rhs:
                nxt: dict[int, float] = {}
                for pos, q in positions.items():
                    if pos < n:
                        for end, r in inside(d + 1, b, pos).items():
                            nxt[end] = nxt.get(end, 0.0) + q * r
                positions = nxt
                if not positions:
                    break
            for end, q in positions.items():
                reached[end] = reached.get(end, 0.0) + q
        return reached

    def prefix_probability(self, tokens, choice: tuple[int, ...]) -> float:
        """p(a sentence starts with `tokens` | j). Each derivation is counted once, at the one child of each rule
        whose yield holds the prefix's last token: the children before it yield whole spans (`probability`'s inside
        values), the children after it are free."""
        tokens = tuple(tokens)
        n = len(tokens)
        if n == 0:
            return 1.0

        @cache
        def inside(d: int, a: int, start: int) -> dict:  # whole spans that end at or before n
            return self._inside_spans(tokens, choice, d, a, start, inside)

        @cache
        def covering(d: int, a: int, start: int) -> float:  # p(the yield of a starts with tokens[start:])
            total = 0.0
            for rhs, p in self.rules[d][choice[d]][a]:
                if d == self.depth - 1:
                    if len(rhs) >= n - start and rhs[:n - start] == tokens[start:]:
                        total += p
                    continue
                before = {start: p}  # the children before the covering one yield tokens[start:pos]
                for b in rhs:
                    total += sum(q * covering(d + 1, b, pos) for pos, q in before.items())
                    nxt: dict[int, float] = {}
                    for pos, q in before.items():
                        for end, r in inside(d + 1, b, pos).items():
                            if end < n:  # a child ending at n holds the last token: counted as covering
                                nxt[end] = nxt.get(end, 0.0) + q * r
                    before = nxt
                    if not before:
                        break
            return total

        return covering(0, 0, 0)

    def posterior(self, tokens) -> dict[tuple[int, ...], float]:
        """p(j | a sentence starts with `tokens`), uniform prior: how well a prompt determines the latent."""
        likelihood = {j: self.prefix_probability(tokens, j) for j in all_choices(self.depth)}
        total = sum(likelihood.values())
        if total == 0:
            raise KobaError(f"no sentence of this grammar starts with {list(tokens)}")
        return {j: v / total for j, v in likelihood.items()}

    def log_probability(self, tokens) -> float:
        """log p(tokens) with j marginalised (uniform prior): what an ideal model's loss is measured against."""
        total = sum(self.probability(tokens, j) for j in all_choices(self.depth)) / 2 ** self.depth
        return math.log(total) if total > 0 else -math.inf

    def choices_deriving(self, tokens) -> list[tuple[int, ...]]:
        """Every j under which `tokens` is a sentence (empty: not a sentence of the grammar at all)."""
        return [j for j in all_choices(self.depth) if self.derives(tokens, j)]


def all_choices(depth: int) -> list[tuple[int, ...]]:
    return [tuple((k >> d) & 1 for d in range(depth)) for k in range(2 ** depth)]
