"""Chinchilla's answers: approach 2 next to approach 3, and the compute-optimal size for a
budget (docs/laws.md §4).

- `compare_approaches`: approach-2 over approach-3 N* at every budget in the data (Hoffmann et
  al. 2022, arXiv 2203.15556, §3.2 against §3.3 as re-fitted by Besiroglu et al. 2024, arXiv
  2404.10102), and APPROACHES_DISAGREE when their intervals do not overlap.
- `propose_size`: N, D for a budget from either fit, with intervals and the extrapolation
  distance, in the fit's own FLOPs convention (Porian et al. 2024, arXiv 2406.19146).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelaws.chinchilla.checks import disjoint
from scalelaws.chinchilla.fit import ChinchillaFit
from scalelaws.chinchilla.isoflop import IsoFLOPFit
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result


@dataclass(frozen=True)
class Comparison(Result):
    """Approach 2 vs approach 3. params: n_exponent_approach2/3 and geomean_ratio (the
    geometric mean over budgets of N*_2/N*_3); budgets: per budget flops, n_opt_2 (+ lo, hi),
    n_opt_3 (+ lo, hi), ratio = n_opt_2/n_opt_3, disagree (None: no interval on either side)."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]
    budgets: tuple[dict[str, Any], ...] = ()

    def predict(self, flops) -> np.ndarray:
        """N*_2/N*_3 from the two fitted laws at `flops` (approach-2 power law over the
        approach-3 closed form)."""
        c = np.atleast_1d(np.asarray(flops, float))
        p, k = self.info["approach2"], self.info["approach3"]
        n2 = p["n_coef"] * c ** p["n_exponent"]
        n3 = k["G"] * (c / k["flops_per_nd"]) ** k["n_exponent"]
        return n2 / n3


def compare_approaches(iso: IsoFLOPFit, surf: ChinchillaFit) -> Comparison:
    """N*_2/N*_3 at every approach-2 budget; APPROACHES_DISAGREE (warning) for each budget,
    and for the exponent, whose intervals do not overlap. Approach-3 intervals come from its
    bootstrap samples (none when it was fitted with n_boot=0)."""
    c = np.array([s["flops"] for s in iso.slices])
    n3, _ = surf.optimal(c)
    n3_ci = surf.optimal_intervals(c)["n"]
    rows, diags = [], []
    if iso.info["compute"] != surf.info["compute"]:
        diags.append(
            Diagnostic(
                "COMPUTE_CONVENTION_MISMATCH",
                "warning",
                f"approach 2 used {iso.info['compute']!r}, approach 3 {surf.info['compute']!r}",
                "fit both with the same compute= convention",
            )
        )
    for s, m3, lo3, hi3 in zip(iso.slices, n3, n3_ci[0], n3_ci[1], strict=True):
        dis = disjoint(s["n_opt"], s["n_opt_lo"], s["n_opt_hi"], m3, lo3, hi3)
        rows.append(
            {
                "label": s["label"],
                "flops": s["flops"],
                "n_opt_2": s["n_opt"],
                "n_opt_2_lo": s["n_opt_lo"],
                "n_opt_2_hi": s["n_opt_hi"],
                "n_opt_3": float(m3),
                "n_opt_3_lo": float(lo3),
                "n_opt_3_hi": float(hi3),
                "ratio": s["n_opt"] / float(m3),
                "disagree": dis,
            }
        )
        if dis:
            diags.append(
                Diagnostic(
                    "APPROACHES_DISAGREE",
                    "warning",
                    f"at C = {s['flops']:.3g}: approach 2 N* = {s['n_opt']:.3g} "
                    f"({s['n_opt_lo']:.3g}, {s['n_opt_hi']:.3g}), approach 3 N* = {m3:.3g} "
                    f"({lo3:.3g}, {hi3:.3g}), ratio {s['n_opt'] / m3:.3g}",
                    "check the isoFLOP slice brackets its minimum and the loss-surface fit",
                    s["label"],
                )
            )
    e2, e3 = iso.params["n_exponent"], surf.params["n_exponent"]
    i2 = iso.intervals.get("n_exponent", (np.nan, np.nan))
    i3 = surf.intervals.get("n_exponent", (np.nan, np.nan))
    if disjoint(e2, *i2, e3, *i3):
        diags.append(
            Diagnostic(
                "APPROACHES_DISAGREE",
                "warning",
                f"N* ∝ C^a: approach 2 a = {e2:.3f} ({i2[0]:.3f}, {i2[1]:.3f}), approach 3 "
                f"beta/(alpha+beta) = {e3:.3f} ({i3[0]:.3f}, {i3[1]:.3f})",
                "the two approaches scale N* differently; trust neither blindly",
                "n_exponent",
            )
        )
    ratios = np.array([r["ratio"] for r in rows])
    return Comparison(
        params={
            "n_exponent_approach2": e2,
            "n_exponent_approach3": e3,
            "geomean_ratio": float(np.exp(np.mean(np.log(ratios)))),
        },
        intervals={"n_exponent_approach2": tuple(i2), "n_exponent_approach3": tuple(i3)},
        metrics={
            "max_abs_log10_ratio": float(np.max(np.abs(np.log10(ratios)))),
            "n_budgets": len(rows),
            "n_disagree": sum(bool(r["disagree"]) for r in rows),
        },
        diagnostics=tuple(diags),
        info={
            "method": "ratio N*_2/N*_3 at each approach-2 budget; disagree = 95% intervals "
            "do not overlap (a point against an interval when one side has none)",
            "approach2": dict(iso.params) | {"compute": iso.info["compute"]},
            "approach3": {
                "G": surf.params["G"],
                "n_exponent": e3,
                "flops_per_nd": surf.info["flops_per_nd"],
                "compute": surf.info["compute"],
            },
        },
        budgets=tuple(rows),
    )


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class SizeProposal(Result):
    """Compute-optimal size for one budget. params: flops, n, d (= tokens, float), tokens
    (rounded), tokens_per_param, and loss (approach 3 only); intervals at info level (95% by
    default), what they hold in info interval_method."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]

    def predict(self) -> tuple[float, float]:
        """(N, D) proposed."""
        return self.params["n"], self.params["d"]


Proposal = SizeProposal  # the name before scalelaws.chinchilla had a propose module


def propose_size(
    fit: ChinchillaFit | IsoFLOPFit, flops: float, *, level: float = 0.95, seed: int = 0
) -> SizeProposal:
    """The compute-optimal N and D (tokens) for a training budget of `flops` FLOPs (in the
    fit's own convention), with `level` prediction intervals (scalelaws.chinchilla.predict;
    info interval_method says what each holds) and the distance in decades outside the fitted
    compute range (EXTRAPOLATION warning when outside)."""
    flops = float(flops)
    if not (math.isfinite(flops) and flops > 0):
        raise ValueError(f"flops = {flops}: a budget must be finite and > 0")
    if not isinstance(fit, ChinchillaFit | IsoFLOPFit):
        raise TypeError(f"propose_size takes a ChinchillaFit or IsoFLOPFit, not {type(fit)}")
    n, d = (float(v[0]) for v in fit.optimal(flops))
    params = {"flops": flops, "n": n, "d": d, "tokens": int(round(d)), "tokens_per_param": d / n}
    intervals: dict[str, tuple] = {}
    if isinstance(fit, ChinchillaFit):
        ci = fit.optimal_intervals(flops, level)  # NaN without samples
        intervals = {k: tuple(ci[k][:, 0]) for k in ("n", "d", "tokens_per_param")}
        loss = fit.prediction(flops=flops, quantity="loss", level=level, seed=seed)
        params["loss"] = float(loss.point[0])
        intervals["loss"] = (loss.lo[0], loss.hi[0])
    else:
        for k in ("n", "d"):
            p = fit.prediction(flops, quantity=k, level=level, seed=seed)
            intervals[k] = (p.lo[0], p.hi[0])
        intervals["tokens_per_param"] = (
            intervals["d"][0] / intervals["n"][1],
            intervals["d"][1] / intervals["n"][0],
        )
    intervals = {k: (float(v[0]), float(v[1])) for k, v in intervals.items()}
    lo, hi = fit.info["flops_range"]
    dist = math.log10(flops / hi) if flops > hi else math.log10(flops / lo) if flops < lo else 0.0
    diags = []
    if dist:
        diags.append(
            Diagnostic(
                "EXTRAPOLATION",
                "warning",
                f"C = {flops:.3g} is {abs(dist):.2f} decades {'above' if dist > 0 else 'below'}"
                f" the fitted range [{lo:.3g}, {hi:.3g}]",
                "treat the size as a guess; run a smaller isoFLOP check near this budget",
            )
        )
    approach = 3 if isinstance(fit, ChinchillaFit) else 2
    return SizeProposal(
        params=params,
        intervals=intervals,
        metrics={},
        diagnostics=tuple(diags),
        info={
            "approach": approach,
            "compute": fit.info["compute"],
            "compute_convention": fit.info["compute_convention"],
            "flops_range": [lo, hi],
            "extrapolation_decades": dist,
            "level": level,
            "interval_method": (
                "n, d, tokens_per_param: bootstrap percentiles of the closed-form optimum (the "
                "law's optimum); loss: prediction interval of a run trained there (bootstrap "
                "parameter sets plus a resampled log residual)"
                if approach == 3
                else "n, d: prediction intervals of a new slice's fitted optimum (bootstrap "
                "draws of the power law plus the slices' scatter about it); tokens_per_param: "
                "from the n and d bounds"
            ),
            "fit_warnings": sorted({x.code for x in fit.warnings}),
        },
    )
