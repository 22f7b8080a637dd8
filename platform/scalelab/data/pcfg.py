"""Synthetic language from a layered probabilistic context-free grammar (PCFG).

In the style of the cfg3 family of Allen-Zhu & Li, "Physics of Language Models: Part 1"
(arXiv 2305.13673, Sec. 2): `depth` levels of nonterminals (one root, then `n_symbols` per
level); each nonterminal has `n_rules` distinct rules, chosen uniformly, each expanding to
`min_rule_len`..`max_rule_len` symbols of the next level; the last level expands to the
terminals 1..n_terminals. Sentences are written `<bos> w1 .. wn <eos>` one after another.

A sentence has 2^(depth) .. 3^(depth) terminals with the default rule lengths 2-3.
The true entropy rate is H(sentence) / E[tokens per sentence], H estimated by Monte Carlo
with the exact sentence probability from the inside algorithm (here: a product of
position-span matrices, one per rule symbol, exact because the grammar is layered).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.data.base import (
    Param,
    Source,
    cache_dir,
    check_step,
    int_between,
    nonneg_int,
    param_error,
    positive_int,
    rank_rows,
    step_rng,
    try_cache,
    unigram_entropy,
    windows,
)
from scalelab.data.tokenizer import BOS, EOS, SPECIALS, Tokenizer
from scalelab.lazy import torch

FORMAT_VERSION = 1
N_SPECIAL = len(SPECIALS)  # terminal t (0-based) is token id N_SPECIAL + t


@dataclass(frozen=True)
class Grammar:
    """rules[a, r, :lengths[a, r]] are the children of rule r of nonterminal a: nonterminal ids
    (numbered level by level, root = 0), or terminal indices 0..n_terminals-1 on the last level."""

    depth: int
    n_symbols: int
    n_terminals: int
    rules: np.ndarray  # int64 [n_nonterminals, n_rules, max_rule_len]
    lengths: np.ndarray  # int64 [n_nonterminals, n_rules]

    @property
    def n_nonterminals(self) -> int:
        return self.rules.shape[0]

    def level_ids(self, level: int) -> np.ndarray:
        """Nonterminal ids on `level` (0 = root)."""
        if level == 0:
            return np.array([0])
        start = 1 + (level - 1) * self.n_symbols
        return np.arange(start, start + self.n_symbols)

    def children(self, a: int, r: int) -> list[int]:
        return [int(c) for c in self.rules[a, r, : self.lengths[a, r]]]

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """(E[terminal counts] per nonterminal [n_nt, n_terminals], E[nodes] per nonterminal),
        by the recursion E(a) = mean over rules of the sum over children, bottom level first."""
        counts = np.zeros((self.n_nonterminals, self.n_terminals))
        nodes = np.ones(self.n_nonterminals)
        for level in range(self.depth - 1, -1, -1):
            for a in self.level_ids(level):
                for r in range(self.lengths.shape[1]):
                    for c in self.children(a, r):
                        if level == self.depth - 1:
                            counts[a, c] += 1 / self.lengths.shape[1]
                        else:
                            counts[a] += counts[c] / self.lengths.shape[1]
                            nodes[a] += nodes[c] / self.lengths.shape[1]
        return counts, nodes

    def sample(self, rng: np.random.Generator, n_sentences: int) -> np.ndarray:
        """`n_sentences` sentences as one token stream <bos> w.. <eos> <bos> .. (vectorised:
        each round expands every symbol of every sentence by one level)."""
        sym = np.zeros(n_sentences, np.int64)  # all roots
        sid = np.arange(n_sentences)
        width = self.rules.shape[2]
        for _ in range(self.depth):
            r = rng.integers(self.lengths.shape[1], size=sym.size)
            n = self.lengths[sym, r]
            sym = self.rules[sym, r][np.arange(width) < n[:, None]]  # row-major keeps order
            sid = np.repeat(sid, n)
        counts = np.bincount(sid, minlength=n_sentences)
        out = np.empty(sym.size + 2 * n_sentences, np.int64)
        starts = np.cumsum(counts + 2) - (counts + 2)
        out[starts] = BOS
        out[starts + counts + 1] = EOS
        out[np.arange(sym.size) + 2 * sid + 1] = sym + N_SPECIAL  # 2 separators per sentence
        return out

    def log_prob(self, sentence: np.ndarray) -> float:
        """ln p(sentence), terminal indices without separators (inside algorithm).

        I_a[i, j] = P(a derives w[i:j]); a rule a -> b c d contributes I_b @ I_c @ I_d (sum over
        split points), each terminal t is the matrix with ones at (i, i+1) where w[i] == t."""
        n = len(sentence)
        inside = np.zeros((self.n_terminals, n + 1, n + 1))
        inside[sentence, np.arange(n), np.arange(n) + 1] = 1.0
        n_rules = self.lengths.shape[1]
        for level in range(self.depth - 1, -1, -1):
            ids = self.level_ids(level)
            base = 0 if level == self.depth - 1 else self.level_ids(level + 1)[0]
            below = inside
            new = np.zeros((len(ids), n + 1, n + 1))
            for k, a in enumerate(ids):
                for r in range(n_rules):
                    kids = self.children(a, r)
                    m = below[kids[0] - base]
                    for c in kids[1:]:
                        m = m @ below[c - base]
                    new[k] += m / n_rules
            inside = new
        p = inside[0, 0, n]
        return math.log(p) if p > 0 else -math.inf


def make_grammar(
    depth: int, n_symbols: int, n_rules: int, min_len: int, max_len: int, n_terminals: int, seed
) -> Grammar:
    rng = np.random.default_rng([seed, 0])
    n_nt = 1 + (depth - 1) * n_symbols
    rules = np.zeros((n_nt, n_rules, max_len), np.int64)
    lengths = np.zeros((n_nt, n_rules), np.int64)
    for level in range(depth):
        last = level == depth - 1
        first_child, n_children = (0, n_terminals) if last else (1 + level * n_symbols, n_symbols)
        ids = [0] if level == 0 else range(1 + (level - 1) * n_symbols, 1 + level * n_symbols)
        for a in ids:
            seen: set[tuple[int, ...]] = set()
            while len(seen) < n_rules:
                k = int(rng.integers(min_len, max_len + 1))
                rule = tuple(int(c) for c in rng.integers(n_children, size=k) + first_child)
                if rule not in seen:
                    rules[a, len(seen), :k] = rule
                    lengths[a, len(seen)] = k
                    seen.add(rule)
    return Grammar(depth, n_symbols, n_terminals, rules, lengths)


class PCFGSource(Source):
    """Token stream of a random layered PCFG; train = windows at random offsets of the first
    `n_tokens`, eval = fixed windows of a separately sampled tail of `eval_tokens`."""

    name = "pcfg"
    PARAMS = {
        "depth": Param(4, int_between(1, 8), "levels of nonterminals, root included"),
        "n_symbols": Param(3, int_between(1, 64), "nonterminals per level below the root"),
        "n_rules": Param(2, int_between(1, 16), "rules per nonterminal"),
        "min_rule_len": Param(2, int_between(1, 4), "shortest rule"),
        "max_rule_len": Param(3, int_between(1, 4), "longest rule"),
        "n_terminals": Param(3, int_between(1, 250), "terminal symbols"),
        "grammar_seed": Param(0, nonneg_int, "seeds the grammar and the sampled stream"),
        "n_tokens": Param(1 << 24, positive_int, "training tokens in the stream"),
        "eval_tokens": Param(1 << 18, positive_int, "held-out tokens after the stream"),
    }

    @classmethod
    def cross_check(cls, p: dict) -> None:
        if p["min_rule_len"] > p["max_rule_len"]:
            raise param_error("min_rule_len", f"must be <= max_rule_len={p['max_rule_len']}")
        lo, hi = p["min_rule_len"], p["max_rule_len"]
        for field, m in (("n_symbols", p["n_symbols"]), ("n_terminals", p["n_terminals"])):
            if sum(m**k for k in range(lo, hi + 1)) < p["n_rules"]:
                raise param_error(field, f"too few symbols for {p['n_rules']} distinct rules")

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        p = self.params
        self.grammar = make_grammar(
            p["depth"],
            p["n_symbols"],
            p["n_rules"],
            p["min_rule_len"],
            p["max_rule_len"],
            p["n_terminals"],
            p["grammar_seed"],
        )
        self.tokenizer = Tokenizer([str(t + 1) for t in range(p["n_terminals"])])
        self.vocab_size = len(self.tokenizer)
        self.n_train = p["n_tokens"]
        self.folder = cache_dir(self.name, p, FORMAT_VERSION)
        self.stream = self._load_or_generate()
        self._entropy: dict | None = None

    # ---- data ----

    def _generate(self, key: int, n_tokens: int) -> np.ndarray:
        """At least `n_tokens` tokens of whole sentences, cut to n_tokens, in chunks of ~1M."""
        counts, _ = self.grammar.expected()
        per_sentence = counts[0].sum() + 2
        rng = np.random.default_rng([self.params["grammar_seed"], key])
        parts, total = [], 0
        while total < n_tokens:
            want = min(n_tokens - total, 1 << 20)
            s = self.grammar.sample(rng, int(want / per_sentence * 1.05) + 1)
            parts.append(s.astype(np.uint8 if self.vocab_size <= 256 else np.uint16))
            total += s.size
        return np.concatenate(parts)[:n_tokens]

    def _load_or_generate(self) -> np.ndarray:
        f = self.folder
        if (f / "meta.json").exists() and (f / "tokens.npy").exists():
            arr = np.load(f / "tokens.npy", mmap_mode="r")
            if arr.size == self.n_train + self.params["eval_tokens"]:
                return arr
        train = self._generate(1, self.n_train)
        held_out = self._generate(2, self.params["eval_tokens"])  # sampled apart: disjoint
        arr = np.concatenate([train, held_out])
        meta = {"n_train": self.n_train, "params": self.params, "format": FORMAT_VERSION}
        try_cache(
            f,
            {
                "tokens.npy": arr,
                "tokenizer.json": self.tokenizer.to_json(),
                "meta.json": json.dumps(meta, indent=1),
            },
            overwrite=True,
        )
        return arr

    def train_offsets(self, step: int, batch_size: int, seq_len: int) -> np.ndarray:
        """Window starts of the global batch of `step`; each window lies in [0, n_train)."""
        high = self.n_train - (seq_len + 1)
        if high < 0:
            raise param_error("n_tokens", f"{self.n_train} tokens < seq_len+1={seq_len + 1}")
        return step_rng(self.seed, check_step(step)).integers(0, high + 1, size=batch_size)

    def batch(self, step, batch_size, seq_len, rank=0, world=1) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len, rank, world)
        offsets = self.train_offsets(step, batch_size, seq_len)[rank_rows(batch_size, rank, world)]
        return windows(self.stream, offsets, seq_len + 1)

    def eval_offsets(self, batch_size: int, seq_len: int) -> np.ndarray:
        n_eval = self.params["eval_tokens"]
        if n_eval < seq_len + 1:
            raise param_error("eval_tokens", f"{n_eval} tokens < seq_len+1={seq_len + 1}")
        # evenly spaced windows over the held-out tail (overlapping only if it is short)
        return self.n_train + np.linspace(0, n_eval - seq_len - 1, batch_size).astype(np.int64)

    def eval_batch(self, batch_size, seq_len) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len)
        return windows(self.stream, self.eval_offsets(batch_size, seq_len), seq_len + 1)

    # ---- statistics ----

    def entropy_rate(self, n_sentences: int = 200) -> dict:
        """Monte Carlo H(sentence)/E[tokens per sentence] (nats/token) with its standard error,
        and the exact upper bound E[derivation entropy]/E[tokens] (equal if unambiguous)."""
        if self._entropy is None:
            path = self.folder / "entropy.json"
            if path.exists():
                self._entropy = json.loads(path.read_text())
            else:
                self._entropy = self._estimate_entropy(n_sentences)
                try_cache(self.folder, {"entropy.json": json.dumps(self._entropy)})
        return self._entropy

    def _estimate_entropy(self, n_sentences: int) -> dict:
        g = self.grammar
        counts, nodes = g.expected()
        tokens = counts[0].sum() + 2  # E[tokens per sentence] with <bos>, <eos>
        rng = np.random.default_rng([self.params["grammar_seed"], 3])
        s = g.sample(rng, n_sentences)
        bounds = np.flatnonzero(s == BOS)
        nll = np.array(
            [
                -g.log_prob(s[b + 1 : e] - N_SPECIAL)
                for b, e in zip(bounds, np.flatnonzero(s == EOS), strict=True)
            ]
        )
        return {
            "entropy_rate": float(nll.mean() / tokens),
            "entropy_rate_se": float(nll.std(ddof=1) / math.sqrt(len(nll)) / tokens),
            "entropy_rate_upper": float(nodes[0] * math.log(g.lengths.shape[1]) / tokens),
            "mean_tokens_per_sentence": float(tokens),
        }

    def unigram(self) -> np.ndarray:
        """Exact unigram distribution of the stream from the grammar (specials included)."""
        counts, _ = self.grammar.expected()
        c = np.zeros(self.vocab_size)
        c[BOS] = c[EOS] = 1.0
        c[N_SPECIAL:] = counts[0]
        return c / c.sum()

    def describe(self) -> dict:
        # ~50 ms of counting per call, the same for every trial on this stream: once a process.
        # The cache folder names the stream (a hash of its params), so it is the key.
        key = str(self.folder)
        if key not in _DESCRIBED:
            train = np.asarray(self.stream[: self.n_train])
            counts = np.bincount(train, minlength=self.vocab_size)
            _DESCRIBED[key] = {
                **super().describe(),
                "n_tokens": int(self.n_train),
                "n_eval_tokens": int(self.params["eval_tokens"]),
                "unigram_entropy": unigram_entropy(counts),
                **self.entropy_rate(),
                "cache": str(Path(self.folder)),
            }
        return dict(_DESCRIBED[key])


_DESCRIBED: dict[str, dict] = {}  # describe() of each stream this process has built
