"""Knowledge data of Allen-Zhu & Li, "Physics of Language Models: Part 3.3" (arXiv 2404.05405):
bioD(N, K, C, D, L, T) (compact: one person per sequence) and bioS(N) (biographies).

Per-fact losses (docs/laws.md §3), in nats, summed over the tokens of a name / value:
p1 = mean over people of the name's loss; p2 = mean over (person, attribute) of the value's
loss (bioS: summed over a person's attributes, then averaged over people); p3 = as p2 over the
first chunk of each value only (mean over (person, attribute)).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scalelab.data.base import (
    EVAL_KEY,
    Param,
    Source,
    cache_dir,
    check_step,
    int_between,
    nonneg_int,
    param_error,
    positive_int,
    rank_rows,
    try_cache,
    unigram_entropy,
)
from scalelab.data.tokenizer import BOS, EOS, IGNORE_INDEX, Tokenizer
from scalelab.lazy import torch
from scalelaws.capacity.law import biod_max_bits

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FactEval:
    """One person per row. Masks are over target positions j (token j + 1 of `tokens`)."""

    tokens: torch.Tensor  # int64 [n_rows, L+1], -100 after the end of a row
    name_mask: torch.Tensor  # bool [n_rows, L]: target is a name token
    value_attr: torch.Tensor  # int64 [n_rows, L]: attribute index of a value token, else -1
    first_chunk: torch.Tensor  # bool [n_rows, L]: target is in the first chunk of a value
    people: torch.Tensor  # int64 [n_rows]: person index of each row
    attributes: tuple[str, ...]  # names of the K attributes
    p2_over_attributes: str  # "mean" (bioD) or "sum" (bioS)

    @property
    def value_mask(self) -> torch.Tensor:
        """bool [n_rows, L]: target is a value token (any attribute)."""
        return self.value_attr >= 0

    def losses(self, per_token_loss: torch.Tensor) -> dict:
        """p1, p2, p3 (nats) from per-target losses [n_rows, L] (cross_entropy, reduction none)."""
        loss = per_token_loss.detach().to("cpu", torch.float64)
        if loss.shape != self.name_mask.shape:
            raise ValueError(
                f"per_token_loss: shape {tuple(loss.shape)} != {tuple(self.name_mask.shape)}"
            )
        loss = torch.nan_to_num(loss) * (self.tokens[:, 1:] != IGNORE_INDEX)
        zeros = torch.zeros(len(loss), len(self.attributes), dtype=torch.float64)
        attr, is_value = self.value_attr.clamp(min=0), self.value_mask
        value = zeros.scatter_add(1, attr, loss * is_value)  # [n, K]: loss of each whole value
        first = zeros.scatter_add(1, attr, loss * (is_value & self.first_chunk))
        p2 = value.sum(1).mean() if self.p2_over_attributes == "sum" else value.mean()
        return {
            "p1": float((loss * self.name_mask).sum(1).mean()),
            "p2": float(p2),
            "p3": float(first.mean()),
            "p2_by_attribute": dict(zip(self.attributes, value.mean(0).tolist(), strict=True)),
        }


def _subset(n: int, max_people: int | None) -> np.ndarray:
    """All people, or `max_people` evenly spaced ones (a fixed, seed-free choice)."""
    if max_people is None or max_people >= n:
        return np.arange(n)
    if max_people <= 0:
        raise ValueError(f"max_people: must be a positive int (got {max_people})")
    return (np.arange(max_people) * n) // max_people


class KnowledgeSource(Source):
    """Shared parts: a table of people, fact_eval / fact_losses, knowledge_meta."""

    attributes: tuple[str, ...] = ()

    def fact_eval(self, max_people: int | None = None) -> FactEval:
        raise NotImplementedError

    @cached_property
    def _full_fact_eval(self) -> FactEval:
        return self.fact_eval()

    def fact_losses(self, per_token_loss: torch.Tensor, facts: FactEval | None = None) -> dict:
        """p1, p2, p3 of docs/laws.md §3 for the rows of `facts` (default: all people)."""
        return (self._full_fact_eval if facts is None else facts).losses(per_token_loss)

    def knowledge_meta(self) -> dict:
        raise NotImplementedError

    @property
    def tokens_per_epoch(self) -> int:
        return int(round(self.params["n_people"] * self.knowledge_meta()["tokens_per_person"]))

    def describe(self) -> dict:
        facts = self._full_fact_eval.tokens
        real = facts[facts >= 0].numpy()
        meta = {k: v for k, v in self.knowledge_meta().items() if k != "used_token_ids"}
        return {
            **super().describe(),
            **meta,
            "n_used_tokens": len(self.knowledge_meta()["used_token_ids"]),
            "tokens_per_epoch": self.tokens_per_epoch,
            "unigram_entropy": unigram_entropy(np.bincount(real, minlength=self.vocab_size)),
        }


# ---- bioD ----------------------------------------------------------------------------------


def _distinct_strings(rng: np.random.Generator, d: int, length: int, t: int) -> np.ndarray:
    """d distinct strings of `length` tokens over range(t), as [d, length]."""
    if t**length <= 1 << 40:
        codes = rng.choice(t**length, size=d, replace=False)
        return np.stack([(codes // t**i) % t for i in range(length - 1, -1, -1)], axis=1)
    out = np.unique(rng.integers(t, size=(2 * d, length)), axis=0)  # collisions are rare
    while len(out) < d:
        out = np.unique(np.concatenate([out, rng.integers(t, size=(d, length))]), axis=0)
    return out[rng.permutation(len(out))[:d]]


class BioDSource(KnowledgeSource):
    """bioD(N, K, C, D, L, T); one person per row: [BOS] f m l v1 .. vK [EOS].

    Name = one token from each of three pools of `name_pool` (N0 = name_pool^3); value k =
    C chunks, each one of D strings of L tokens (a fixed set per attribute) over T value tokens.
    Defaults are the compact CPU format: K=8, C=L=1, D=T=64, seq_len = 4 + K*C*L = 12.
    Training rows visit people in a fresh random order each epoch: exposures are equal."""

    name = "biod"
    PARAMS = {
        "n_people": Param(500, positive_int, "N"),
        "K": Param(8, int_between(1, 256), "attributes per person"),
        "C": Param(1, int_between(1, 64), "chunks per value"),
        "D": Param(64, positive_int, "distinct chunks per attribute"),
        "L": Param(1, int_between(1, 64), "tokens per chunk"),
        "T": Param(64, positive_int, "value-token vocabulary"),
        "name_pool": Param(64, int_between(1, 100_000), "tokens per name part; N0 = pool^3"),
        "data_seed": Param(0, nonneg_int, "seeds the people (not the batch order)"),
    }

    @classmethod
    def cross_check(cls, p: dict) -> None:
        if p["n_people"] > p["name_pool"] ** 3:
            raise param_error("n_people", f"must be <= name_pool^3 = {p['name_pool'] ** 3}")
        if p["L"] * math.log(p["T"]) < math.log(p["D"]) - 1e-12:
            raise param_error("D", f"must be <= T^L = {p['T']}^{p['L']} (distinct chunk strings)")

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        p = self.params
        n, k, c, d, ln, t, pool = (p[x] for x in ("n_people", "K", "C", "D", "L", "T", "name_pool"))
        self.attributes = tuple(f"attr{i}" for i in range(k))
        self.seq_len = 4 + k * c * ln
        # ids: specials 0-2, name parts 3 + j*pool + x, value tokens 3 + 3*pool + v
        words = [f"{part}{x}" for part in "fml" for x in range(pool)] + [f"v{v}" for v in range(t)]
        self.tokenizer = Tokenizer(words)
        self.vocab_size = len(self.tokenizer)
        self.folder = cache_dir(self.name, p, FORMAT_VERSION)
        rng = np.random.default_rng([p["data_seed"], 1])
        codes = rng.choice(pool**3, size=n, replace=False)  # unique names
        self.names = np.stack([codes // pool**2, (codes // pool) % pool, codes % pool], axis=1)
        self.chunks = np.stack([_distinct_strings(rng, d, ln, t) for _ in range(k)])  # [K, D, L]
        self.values = rng.integers(d, size=(n, k, c))  # chunk index per (person, attr, chunk)
        name_ids = 3 + np.arange(3) * pool + self.names  # [N, 3]
        value_ids = 3 + 3 * pool + self.chunks[np.arange(k)[None, :, None], self.values]
        self.rows = np.concatenate(
            [np.full((n, 1), BOS), name_ids, value_ids.reshape(n, -1), np.full((n, 1), EOS)], 1
        ).astype(np.int64)  # [N, seq_len + 1]
        self.used_token_ids = [int(i) for i in np.unique(self.rows)]
        meta = {k_: v for k_, v in self.knowledge_meta().items() if k_ != "used_token_ids"}
        try_cache(
            self.folder,
            {
                "rows.npy": self.rows.astype(np.int32),
                "tokenizer.json": self.tokenizer.to_json(),
                "meta.json": json.dumps(meta, indent=1),
            },
        )
        self._perm: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, EVAL_KEY + 1, epoch])
            self._perm = (epoch, rng.permutation(self.params["n_people"]))
        return self._perm[1]

    def train_people(self, step: int, batch_size: int) -> np.ndarray:
        """People of the global batch of `step`: global row g = step*B + i is position g % N of
        the random order of epoch g // N (stateless: a function of seed and step only)."""
        n = self.params["n_people"]
        g = check_step(step) * batch_size + np.arange(batch_size)
        out = np.empty(batch_size, np.int64)
        for e in np.unique(g // n):
            sel = g // n == e
            out[sel] = self._epoch_order(int(e))[g[sel] % n]
        return out

    def _pad(self, rows: np.ndarray, seq_len: int) -> torch.Tensor:
        pad = np.full((len(rows), seq_len + 1 - rows.shape[1]), IGNORE_INDEX)
        return torch.from_numpy(np.concatenate([rows, pad], 1))

    def batch(self, step, batch_size, seq_len, rank=0, world=1) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len, rank, world)
        people = self.train_people(step, batch_size)[rank_rows(batch_size, rank, world)]
        return self._pad(self.rows[people], seq_len)

    def eval_batch(self, batch_size, seq_len) -> torch.Tensor:
        """Training facts by design: people evenly spread over the table (seed-free)."""
        self.check_batch_args(batch_size, seq_len)
        people = (np.arange(batch_size) * self.params["n_people"]) // batch_size
        return self._pad(self.rows[people % self.params["n_people"]], seq_len)

    def fact_eval(self, max_people: int | None = None) -> FactEval:
        p = self.params
        people = _subset(p["n_people"], max_people)
        n, width = len(people), self.seq_len
        # target j predicts token j+1: name tokens are targets 0..2, value k chunk c token m
        # is token 4 + (k*C + c)*L + m, i.e. target 3 + (k*C + c)*L + m; target width-1 is EOS
        pos = np.arange(width)
        v = pos - 3
        is_value = (v >= 0) & (v < p["K"] * p["C"] * p["L"])
        attr = np.where(is_value, v // (p["C"] * p["L"]), -1)
        first = is_value & ((v // p["L"]) % p["C"] == 0)

        def rows(x):
            return torch.from_numpy(np.broadcast_to(x, (n, width)).copy())

        return FactEval(
            tokens=torch.from_numpy(self.rows[people].copy()),
            name_mask=rows(pos < 3),
            value_attr=rows(attr),
            first_chunk=rows(first),
            people=torch.from_numpy(people),
            attributes=self.attributes,
            p2_over_attributes="mean",
        )

    def knowledge_meta(self) -> dict:
        p = self.params
        n, k, c, d, ln, t = (p[x] for x in ("n_people", "K", "C", "D", "L", "T"))
        n0 = p["name_pool"] ** 3
        # docs/laws.md §3: bioD max = N·log2(N0/N) + N·K·C·log2(D) + K·D·log2(T^L/D)
        max_bits = biod_max_bits(n, k, c, d, ln, t, n0=n0)
        return {
            "kind": "biod",
            "n_people": n,
            "n0": n0,
            "K": k,
            "C": c,
            "D": d,
            "L": ln,
            "T": t,
            "tokens_per_person": self.seq_len,  # targets per row: N*12 tokens = one exposure
            "max_bits": max_bits,
            "attributes": list(self.attributes),
            "used_token_ids": self.used_token_ids,
        }
