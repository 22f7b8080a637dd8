"""bioS(N) of Allen-Zhu & Li, "Physics of Language Models: Part 3.3" (arXiv 2404.05405, Sec. 2.1).

Each person: a unique name (first x middle x last), gender, birth date, birth city, university,
major, employer; the work city is the employer's HQ city. A biography is six sentences, one per
attribute (templates in pools.py); the first sentence names the person, the others start with
the pronoun, whose first occurrence is the gender value. Word-level tokens.

Training rows are windows of a stream `<bos> bio <eos> <bos> bio <eos> ..` of people drawn
uniformly per (seed, step); each row starts at a random offset into its first biography.
`templates="multi"` draws one of 5 templates per sentence per exposure; `permute` shuffles the
sentence order per exposure (the paper's multi5 / permute augmentations).
"""

from __future__ import annotations

import json

import numpy as np

from scalelab.data.base import (
    EVAL_KEY,
    Param,
    cache_dir,
    check_step,
    is_bool,
    nonneg_int,
    one_of,
    rank_rows,
    step_rng,
    try_cache,
)
from scalelab.data.knowledge import FORMAT_VERSION, FactEval, KnowledgeSource, _subset
from scalelab.data.pools import (
    ATTRIBUTES,
    MONTHS,
    N_DAYS,
    N_EMPLOYER,
    N_FIRST,
    N_LAST,
    N_MIDDLE,
    N_YEARS,
    PRONOUNS,
    SENTENCE_ATTRIBUTES,
    TEMPLATES,
    bios_pools,
)
from scalelab.data.tokenizer import BOS, EOS, IGNORE_INDEX, Tokenizer
from scalelab.lazy import torch
from scalelaws.capacity.law import bios_max_bits

SUBJ, VAL = -1, -2  # template markers for {s} and {v}
# columns of the people table
FIRST, MIDDLE, LAST, GENDER, MONTH, DAY, YEAR, CITY, UNIV, MAJOR, EMPLOYER = range(11)
N0 = N_FIRST * N_MIDDLE * N_LAST  # 1.6e8 possible names; log2 = 27.25
# docs/laws.md §3: S0 = 2·(12·28·200)·200·300·100·263 (gender, date, city, university, major, employer)
S0 = 2 * (12 * N_DAYS * N_YEARS) * 200 * 300 * 100 * N_EMPLOYER


def _positive_people(v) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= N0
    return None if ok else f"must be a positive int <= {N0}"


class BioSSource(KnowledgeSource):
    name = "bios"
    PARAMS = {
        "n_people": Param(1000, _positive_people, "N"),
        "templates": Param("single", one_of("single", "multi"), "1 or 5 templates per sentence"),
        "permute": Param(False, is_bool, "shuffle sentence order per exposure"),
        "data_seed": Param(0, nonneg_int, "seeds the people (not the batch order)"),
    }
    attributes = ATTRIBUTES

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        p = self.params
        n = p["n_people"]
        self.pools = pools = bios_pools()
        self.tokenizer = tok = Tokenizer(pools.words())
        self.vocab_size = len(tok)
        self.n_templates = 1 if p["templates"] == "single" else len(TEMPLATES["birth_date"])
        one = lambda words: np.array([tok.encode(w)[0] for w in words])  # noqa: E731
        self.name_ids = [one(pools.first), one(pools.middle), one(pools.last)]
        self.pronoun_ids = one(PRONOUNS)
        self.day_ids, self.month_ids, self.year_ids = one(pools.days), one(MONTHS), one(pools.years)
        self.city_toks = [tok.encode(c) for c in pools.cities]
        self.univ_toks = [tok.encode(u) for u in pools.universities]
        self.major_toks = [tok.encode(m) for m in pools.majors]
        self.employer_toks = [tok.encode(e) for e in pools.employers]
        self.hq = np.array(pools.employer_city)
        marker = {"{s}": SUBJ, "{v}": VAL}
        self.templates = [
            [[marker[w] if w in marker else tok.encode(w)[0] for w in t.split()] for t in ts]
            for ts in TEMPLATES.values()
        ]
        # the people: unique names (sampled without replacement from N0), independent attributes
        rng = np.random.default_rng([p["data_seed"], 1])
        code = rng.choice(N0, size=n, replace=False)
        sizes = (2, 12, N_DAYS, N_YEARS, len(pools.cities), len(pools.universities))
        sizes += (len(pools.majors), N_EMPLOYER)
        self.people = np.column_stack(
            [code // (N_MIDDLE * N_LAST), (code // N_LAST) % N_MIDDLE, code % N_LAST]
            + [rng.integers(s, size=n) for s in sizes]
        )
        self._lengths()
        meta = {k: v for k, v in self.knowledge_meta().items() if k != "used_token_ids"}
        try_cache(
            cache_dir(self.name, p, FORMAT_VERSION),
            {
                "people.npy": self.people,
                "tokenizer.json": tok.to_json(),
                "meta.json": json.dumps(meta, indent=1),
            },
        )

    # ---- rendering ----

    def _values(self, i: int) -> list[list[int]]:
        """Value tokens of person i, in SENTENCE_ATTRIBUTES order."""
        r = self.people[i]
        date = [self.day_ids[r[DAY]], self.month_ids[r[MONTH]], self.year_ids[r[YEAR]]]
        return [
            date,
            self.city_toks[r[CITY]],
            self.univ_toks[r[UNIV]],
            self.major_toks[r[MAJOR]],
            self.employer_toks[r[EMPLOYER]],
            self.city_toks[self.hq[r[EMPLOYER]]],
        ]

    def render(self, i: int, tpl, order, spans: dict | None = None) -> list[int]:
        """Biography of person i: sentence order[0] first, template tpl[a] for attribute a.
        If `spans` is a dict, it receives (start, end) token spans of the name and each value."""
        r = self.people[i]
        vals = self._values(i)
        name = [self.name_ids[j][r[j]] for j in (FIRST, MIDDLE, LAST)]
        out: list[int] = []
        for pos, a in enumerate(order):
            for t in self.templates[a][tpl[a]]:
                if t == SUBJ and pos == 0:
                    if spans is not None:
                        spans["name"] = (len(out), len(out) + 3)
                    out += name
                elif t == SUBJ:
                    if spans is not None and "gender" not in spans:
                        spans["gender"] = (len(out), len(out) + 1)
                    out.append(self.pronoun_ids[r[GENDER]])
                elif t == VAL:
                    if spans is not None:
                        spans[SENTENCE_ATTRIBUTES[a]] = (len(out), len(out) + len(vals[a]))
                    out += vals[a]
                else:
                    out.append(t)
        return out

    def person(self, i: int) -> dict[str, str]:
        """Person i's name and attribute values as text (what the biography must contain)."""
        r, d = self.people[i], self.tokenizer.decode
        out = {"name": d(self.name_ids[j][r[j]] for j in (FIRST, MIDDLE, LAST))}
        out["gender"] = PRONOUNS[r[GENDER]]
        return out | {a: d(v) for a, v in zip(SENTENCE_ATTRIBUTES, self._values(i), strict=True)}

    def _lengths(self) -> None:
        """Shortest and mean tokens of a `<bos> bio <eos>` unit (for row packing, exposures)."""
        fixed = [
            [sum(t >= 0 for t in tt) for tt in ts[: self.n_templates]] for ts in self.templates
        ]
        lens = [np.array([len(x) for x in toks]) for toks in (self.city_toks, self.univ_toks)]
        major_len = np.array([len(x) for x in self.major_toks])
        emp_len = np.array([len(x) for x in self.employer_toks])
        city_len, univ_len = lens
        pp = self.people
        value_len = 3 + city_len[pp[:, CITY]] + univ_len[pp[:, UNIV]] + major_len[pp[:, MAJOR]]
        value_len += emp_len[pp[:, EMPLOYER]] + city_len[self.hq[pp[:, EMPLOYER]]]
        base = 2 + 3 + (len(fixed) - 1)  # <bos> <eos>, the name, one pronoun per other sentence
        self.min_unit = base + sum(min(f) for f in fixed) + int(value_len.min())
        self.mean_unit = base + sum(float(np.mean(f)) for f in fixed) + float(value_len.mean())

    def _rows(self, rng: np.random.Generator, batch_size: int, seq_len: int, rows: slice):
        """Draw the global batch (so every rank draws the same), then render only `rows`."""
        m = seq_len // self.min_unit + 2  # 1 + (m-1)*min_unit >= seq_len + 1 tokens always
        people = rng.integers(self.params["n_people"], size=(batch_size, m))
        tpl = rng.integers(self.n_templates, size=(batch_size, m, 6))
        if self.params["permute"]:
            order = np.argsort(rng.random((batch_size, m, 6)), axis=-1)
        else:
            order = np.broadcast_to(np.arange(6), (batch_size, m, 6))
        start = rng.random(batch_size)
        out = []
        for r in range(batch_size)[rows]:
            toks: list[int] = []
            for j in range(m):
                unit = [BOS, *self.render(people[r, j], tpl[r, j], order[r, j]), EOS]
                toks += unit[int(start[r] * len(unit)) :] if j == 0 else unit
                if len(toks) > seq_len:
                    break
            out.append(toks[: seq_len + 1])
        return torch.tensor(out, dtype=torch.int64).reshape(-1, seq_len + 1)

    def batch(self, step, batch_size, seq_len, rank=0, world=1) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len, rank, world)
        rng = step_rng(self.seed, check_step(step))
        return self._rows(rng, batch_size, seq_len, rank_rows(batch_size, rank, world))

    def eval_batch(self, batch_size, seq_len) -> torch.Tensor:
        """Training facts by design, drawn like a training batch from a fixed seed-free RNG."""
        self.check_batch_args(batch_size, seq_len)
        rng = np.random.default_rng([EVAL_KEY, self.params["data_seed"]])
        return self._rows(rng, batch_size, seq_len, slice(None))

    # ---- knowledge ----

    def fact_eval(self, max_people: int | None = None) -> FactEval:
        """Each person's biography in the canonical sentence order, one row each; with multi
        templates, a fixed template per (person, sentence)."""
        p = self.params
        people = _subset(p["n_people"], max_people)
        rng = np.random.default_rng([p["data_seed"], EVAL_KEY])
        tpl = rng.integers(self.n_templates, size=(p["n_people"], 6))[people]
        rows, spans = [], np.zeros((len(people), 1 + len(ATTRIBUTES), 2), np.int64)
        for r, (i, t) in enumerate(zip(people, tpl, strict=True)):
            s: dict = {}
            rows.append([BOS, *self.render(int(i), t, range(6), s), EOS])
            spans[r] = [s["name"], *(s[a] for a in ATTRIBUTES)]
        width = max(map(len, rows))
        tokens = np.full((len(rows), width), IGNORE_INDEX, np.int64)
        for r, row in enumerate(rows):
            tokens[r, : len(row)] = row
        # bio position q is row token q + 1 (after <bos>), i.e. target q: spans are targets
        q = np.arange(width - 1)
        inside = (q >= spans[:, :, :1]) & (q < spans[:, :, 1:])  # [n, 1 + K, width - 1]
        name = inside[:, 0]
        attr = np.where(inside[:, 1:].any(1), inside[:, 1:].argmax(1), -1)
        first = (q == spans[:, 1:, :1]).any(1)
        tokens, name, attr, first = map(torch.from_numpy, (tokens, name, attr, first))
        return FactEval(
            tokens,
            name,
            attr,
            first,
            torch.from_numpy(people),
            ATTRIBUTES,
            p2_over_attributes="sum",
        )

    def knowledge_meta(self) -> dict:
        n = self.params["n_people"]
        return {
            "kind": "bios",
            "n_people": n,
            "n0": N0,
            "S0": S0,
            "K": len(ATTRIBUTES),
            "attributes": list(ATTRIBUTES),
            "tokens_per_person": self.mean_unit,  # mean tokens of <bos> bio <eos>
            # docs/laws.md §3: bioS max = N·log2(N0/N) + N·log2(S0)
            "max_bits": bios_max_bits(n, n0=N0, s0=S0),
            "used_token_ids": self.used_token_ids,
        }

    @property
    def used_token_ids(self) -> list[int]:
        """Ids any biography of these N people can contain (templates in use, their values)."""
        if not hasattr(self, "_used"):
            used = {BOS, EOS}
            for ts in self.templates:
                used |= {t for tt in ts[: self.n_templates] for t in tt if t >= 0}
            pp = self.people
            for col, ids in zip((FIRST, MIDDLE, LAST), self.name_ids, strict=True):
                used |= set(ids[np.unique(pp[:, col])].tolist())
            used |= set(self.pronoun_ids[np.unique(pp[:, GENDER])].tolist())
            used |= set(self.day_ids[np.unique(pp[:, DAY])].tolist())
            used |= set(self.month_ids[np.unique(pp[:, MONTH])].tolist())
            used |= set(self.year_ids[np.unique(pp[:, YEAR])].tolist())
            cities = np.union1d(pp[:, CITY], self.hq[pp[:, EMPLOYER]])
            for toks, idx in (
                (self.city_toks, cities),
                (self.univ_toks, np.unique(pp[:, UNIV])),
                (self.major_toks, np.unique(pp[:, MAJOR])),
                (self.employer_toks, np.unique(pp[:, EMPLOYER])),
            ):
                used |= {t for i in idx for t in toks[i]}
            self._used = sorted(int(t) for t in used)
        return self._used
