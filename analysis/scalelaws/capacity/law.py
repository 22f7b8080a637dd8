"""Knowledge capacity in bits, and the bits-per-parameter ratio (docs/laws.md §3).

Allen-Zhu & Li, "Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws"
(arXiv 2404.05405): bit lower bounds for the bioS and bioD data (Def. 2.1/2.2 data, Thm 3.2
bit formulas as written in docs/laws.md), and the law bits ≈ min(R·P, max bits) with R ≈ 2.

Losses p1, p2, p3 are in nats, summed over the tokens of a name / value (not averaged):
p1 = mean over people of their name's loss; p2 = mean over (person, attribute) of the whole
value's loss (bioS: summed over the attributes); p3 = the same for the first chunk only.
Every term is log2(X / e^p) = log2 X − p/ln 2, computed in logs (T^L never overflows).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LN2 = math.log(2.0)
BIOS_N0 = 400 * 400 * 1000  # first × middle × last name pools; log2 = 27.25
BIOS_S0 = (
    2 * (12 * 28 * 200) * 200 * 300 * 100 * 263
)  # date × city × univ × major × employer; log2 = 47.59


def _out(x):
    x = np.asarray(x, float)
    return float(x) if x.ndim == 0 else x


def _check(**kw) -> None:
    for name, v in kw.items():
        if not np.all(np.asarray(v, float) >= 1):
            raise ValueError(f"{name}={v}: must be >= 1")


def biod_bits(N, K, C, D, L, T, p1, p2, p3, n0: float = BIOS_N0):
    """bioD bits (Allen-Zhu & Li, docs/laws.md §3):
    N·log2(N0/e^p1) + N·K·log2(D^C/e^p2) + K·D·log2(T^L/(D·e^p3)).

    For the compact CPU bioD: C = 1, L = 1, n0 = 64**3, D = 64 values per attribute.
    No learning: p1 = ln N0, p2 = C·ln D, p3 = L·ln T − ln D give 0 bits.
    """
    _check(N=N, K=K, C=C, D=D, L=L, T=T, n0=n0)
    names = N * (math.log2(n0) - np.asarray(p1, float) / LN2)
    values = N * K * (C * math.log2(D) - np.asarray(p2, float) / LN2)
    value_sets = K * D * (L * math.log2(T) - math.log2(D) - np.asarray(p3, float) / LN2)
    return _out(names + values + value_sets)


def biod_max_bits(N, K, C, D, L, T, n0: float = BIOS_N0) -> float:
    """bioD max (docs/laws.md §3): N·log2(N0/N) + N·K·C·log2(D) + K·D·log2(T^L/D).

    Equals biod_bits at zero error: p1 = ln N (a known name is one of N), p2 = p3 = 0.
    The last term is the value sets; it is 0 when the D values are all T^L strings (T^L = D).
    """
    _check(N=N, K=K, C=C, D=D, L=L, T=T, n0=n0)
    if N > n0:
        raise ValueError(f"N={N} exceeds the number of possible names n0={n0}")
    return float(
        N * math.log2(n0 / N) + N * K * C * math.log2(D) + K * D * (L * math.log2(T) - math.log2(D))
    )


def bios_bits(N, p1, p2, n0: float = BIOS_N0, s0: float = BIOS_S0):
    """bioS bits (docs/laws.md §3): N·log2(N0/e^p1) + N·log2(S0/e^p2), p2 summed over attributes.
    No learning: p1 = ln N0, p2 = ln S0 give 0 bits."""
    _check(N=N, n0=n0, s0=s0)
    names = N * (math.log2(n0) - np.asarray(p1, float) / LN2)
    attrs = N * (math.log2(s0) - np.asarray(p2, float) / LN2)
    return _out(names + attrs)


def bios_max_bits(N, n0: float = BIOS_N0, s0: float = BIOS_S0) -> float:
    """bioS max: N·log2(N0/N) + N·log2(S0), i.e. 27.25 + 47.59 − log2 N bits per person."""
    _check(N=N, n0=n0, s0=s0)
    if N > n0:
        raise ValueError(f"N={N} exceeds the number of possible names n0={n0}")
    return float(N * math.log2(n0 / N) + N * math.log2(s0))


def knowledge_bits(meta: dict, p1, p2, p3=None):
    """Bits of a knowledge.json record (the data's metadata + losses): bioD or bioS by
    meta["kind"]. bioD needs p3; bioS ignores it."""
    kind, n, n0 = meta.get("kind"), meta["n_people"], meta["n0"]
    if kind == "biod":
        if p3 is None:
            raise ValueError("p3: bioD bits need the first-chunk loss p3")
        k, c, d, ln, t = (meta[x] for x in ("K", "C", "D", "L", "T"))
        return biod_bits(n, k, c, d, ln, t, p1, p2, p3, n0=n0)
    if kind == "bios":
        return bios_bits(n, p1, p2, n0=n0, s0=meta.get("S0", BIOS_S0))
    raise ValueError(f"kind: {kind!r} is not a knowledge data source; expected 'biod' or 'bios'")


def knowledge_max_bits(meta: dict) -> float:
    """Max bits of a knowledge.json record (bioD or bioS by meta["kind"])."""
    kind, n, n0 = meta.get("kind"), meta["n_people"], meta["n0"]
    if kind == "biod":
        k, c, d, ln, t = (meta[x] for x in ("K", "C", "D", "L", "T"))
        return biod_max_bits(n, k, c, d, ln, t, n0=n0)
    if kind == "bios":
        return bios_max_bits(n, n0=n0, s0=meta.get("S0", BIOS_S0))
    raise ValueError(f"kind: {kind!r} is not a knowledge data source; expected 'biod' or 'bios'")


def capacity_law(params, ratio: float, max_bits):
    """The capacity law: bits ≈ min(R·P, max bits) (Allen-Zhu & Li, R ≈ 2 at 1000 exposures)."""
    return _out(np.minimum(ratio * np.asarray(params, float), np.asarray(max_bits, float)))


@dataclass(frozen=True)
class CapacityFit:
    """R from bits ≈ R·P over the capacity-bound models; 95% interval (OLS, no intercept)."""

    ratio: float  # R, bits per parameter
    ratio_interval: tuple[float, float]
    n_bound: int  # models with bits < bound_frac·max (used in the fit)
    bound: tuple[bool, ...]  # per trial: used in the fit
    ratios: tuple[float, ...]  # per trial: bits / P
    max_ratios: tuple[float, ...]  # per trial: R_max = max bits / P
    peak_ratio: float  # largest bits / P over all trials
    peak_index: int

    def to_dict(self) -> dict:
        return asdict(self)


def fit_ratio(params, bits, max_bits, bound_frac: float = 0.9, bound=None) -> CapacityFit:
    """Fit R in bits ≈ min(R·P, max_bits) on the capacity-bound models (bits < bound_frac·max)
    by OLS through the origin (statsmodels), with its 95% interval.

    `max_bits` is a scalar or one value per trial (when N differs between trials). `bound`, a
    boolean per trial, fixes the fitted set instead (e.g. the fp32 set for quantized bits).
    """
    p = np.asarray(params, float)
    y = np.asarray(bits, float)
    mx = np.broadcast_to(np.asarray(max_bits, float), p.shape)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError("params and bits must be 1-D arrays of the same length")
    if not np.all(p > 0):
        raise ValueError("params must be > 0")
    if not 0 < bound_frac <= 1:
        raise ValueError(f"bound_frac={bound_frac}: must be in (0, 1]")
    bound = y < bound_frac * mx if bound is None else np.asarray(bound, bool)
    if bound.shape != p.shape:
        raise ValueError("bound must have one boolean per trial")
    if bound.sum() < 2:
        raise ValueError(
            f"only {int(bound.sum())} models have bits < {bound_frac}·max; need >= 2 "
            "capacity-bound models (train smaller models or more people)"
        )
    import statsmodels.api as sm  # only the fit needs it (the bit formulas run anywhere)

    res = sm.OLS(y[bound], p[bound]).fit()
    lo, hi = res.conf_int(0.05)[0]
    ratios = y / p
    k = int(np.argmax(ratios))
    return CapacityFit(
        ratio=float(res.params[0]),
        ratio_interval=(float(lo), float(hi)),
        n_bound=int(bound.sum()),
        bound=tuple(bool(b) for b in bound),
        ratios=tuple(ratios.tolist()),
        max_ratios=tuple((mx / p).tolist()),
        peak_ratio=float(ratios[k]),
        peak_index=k,
    )
