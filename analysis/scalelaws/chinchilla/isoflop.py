"""Compute-optimal model size: Chinchilla approaches 2 and 3, side by side, and proposals.

- Approach 2 (Hoffmann et al. 2022, arXiv 2203.15556, §3.2): per FLOP budget, a parabola of
  final loss in ln N over the isoFLOP slice; its minimum N_opt (95% interval by the delta
  method from the parabola's OLS covariance, t quantile with n − 3 degrees of freedom); then
  N_opt ∝ C^n_exponent and D_opt ∝ C^d_exponent by OLS on logs (statsmodels, 95% intervals).
  Hoffmann's a and b are our n_exponent and d_exponent.
- Approach 3 (Hoffmann §3.3; Besiroglu et al. 2024, arXiv 2404.10102): L(N, D) = E + A/N^α +
  B/D^β, in `scalelaws.chinchilla.fit` (re-exported here).
- `compare_approaches`: approach-2 over approach-3 N* at every budget in the data, and
  APPROACHES_DISAGREE when their intervals do not overlap.
- `propose_size`: N, D for a budget from either fit, with intervals and the extrapolation
  distance.

FLOPs convention (`compute`): "6ND" (C = 6·N·D), "flops_per_token" (C = flops_per_token·D,
from the model shape: 6N + attention) or "total" (a total-FLOPs column). Porian et al. 2024
(arXiv 2406.19146) show that the choice moves the fitted exponent, so it is an argument of
every fit and is stated in every result's info.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from scalelaws.chinchilla.fit import (
    BESIROGLU,
    CODES,
    COMPUTE,
    HOFFMANN,
    PORIAN,
    ChinchillaFit,
    RunsTable,
    besiroglu_grid,
    fit_loss_surface,
    runs_table,
    wide_interval,
)
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result

__all__ = [
    "BESIROGLU",
    "CODES",
    "COMPUTE",
    "HOFFMANN",
    "PORIAN",
    "ChinchillaFit",
    "Comparison",
    "IsoFLOPFit",
    "Proposal",
    "besiroglu_grid",
    "compare_approaches",
    "fit_isoflop",
    "fit_loss_surface",
    "propose_size",
    "runs_table",
]


# --------------------------------------------------------------------------- approach 2


def _slices(t: RunsTable, by_budget: bool, gap_dex: float) -> list[tuple[str, np.ndarray]]:
    """Row indices of each slice, in increasing compute."""
    if by_budget:
        out = [(str(g), np.flatnonzero(t.groups == g)) for g in np.unique(t.groups)]
    else:  # split the sorted log10 C wherever consecutive runs are more than gap_dex apart
        order = np.argsort(t.flops, kind="stable")
        breaks = np.flatnonzero(np.diff(np.log10(t.flops[order])) > gap_dex) + 1
        out = [("", idx) for idx in np.split(order, breaks)]
    out = [(g, idx) for g, idx in out if idx.size]
    out.sort(key=lambda s: float(np.mean(np.log(t.flops[s[1]]))))
    return [(g or f"C~{np.exp(np.mean(np.log(t.flops[i]))):.3g}", i) for g, i in out]


def _parabola(label: str, t: RunsTable, idx: np.ndarray) -> tuple[dict[str, Any], list]:
    """Fit L = c0 + c1·x + c2·x², x = ln N − mean; minimum and its delta-method interval."""
    n, loss, flops, d = t.n[idx], t.loss[idx], t.flops[idx], t.d[idx]
    c = float(np.exp(np.mean(np.log(flops))))
    where = f"isoFLOP slice {label} (C = {c:.3g}, {idx.size} runs)"
    if np.unique(n).size < 3:
        raise ValueError(
            f"{where}: a parabola in log N needs >= 3 points with distinct N, got "
            f"{np.unique(n).size}; add model sizes to this budget or drop it"
        )
    xm = float(np.mean(np.log(n)))
    x = np.log(n) - xm
    design = np.column_stack([np.ones_like(x), x, x * x])
    coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
    c0, c1, c2 = (float(v) for v in coef)
    if c2 <= 0:
        raise ValueError(
            f"{where}: the parabola opens downward (curvature {c2:.3g} <= 0), so it has no "
            "minimum; the slice does not bracket the optimum or is too noisy"
        )
    xs = -c1 / (2 * c2)
    dof = idx.size - 3
    diags = []
    if dof > 0:
        resid = loss - design @ coef
        cov = float(resid @ resid) / dof * np.linalg.inv(design.T @ design)
        g = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2**2)])
        half = stats.t.ppf(0.975, dof) * math.sqrt(max(float(g @ cov @ g), 0.0))
        lo, hi = xs - half, xs + half
    else:
        lo = hi = float("nan")
        diags.append(
            Diagnostic(
                "NO_INTERVAL",
                "info",
                f"{where}: 3 points fit the parabola exactly, so N_opt has no interval",
                "add a fourth model size at this budget",
                label,
            )
        )
    # FLOPs per token as a function of N within the slice (exactly 6N under "6ND").
    fpt = np.polyfit(np.log(n), np.log(flops / d), 1)

    def d_at(log_n: float) -> float:
        return c / float(np.exp(np.polyval(fpt, log_n)))

    n_opt = math.exp(xm + xs)
    if not n.min() <= n_opt <= n.max():
        diags.append(
            Diagnostic(
                "OPTIMUM_OUTSIDE_SLICE",
                "warning",
                f"{where}: N_opt = {n_opt:.3g} lies outside the slice's N range "
                f"[{n.min():.3g}, {n.max():.3g}] (extrapolated)",
                "add runs beyond that end of the slice, or drop it",
                label,
            )
        )
    if flops.max() / flops.min() > 1.5:
        diags.append(
            Diagnostic(
                "SLICE_SPREAD",
                "warning",
                f"{where}: its runs span {flops.min():.3g} to {flops.max():.3g} FLOPs",
                "group by a budget column (budget_col) or use a smaller gap_dex",
                label,
            )
        )
    row = {
        "label": label,
        "flops": c,
        "n_points": int(idx.size),
        "n_min": float(n.min()),
        "n_max": float(n.max()),
        "n_opt": n_opt,
        "n_opt_lo": math.exp(xm + lo) if np.isfinite(lo) else float("nan"),
        "n_opt_hi": math.exp(xm + hi) if np.isfinite(hi) else float("nan"),
        "d_opt": d_at(xm + xs),
        "d_opt_lo": min(d_at(xm + hi), d_at(xm + lo)) if np.isfinite(lo) else float("nan"),
        "d_opt_hi": max(d_at(xm + hi), d_at(xm + lo)) if np.isfinite(lo) else float("nan"),
        "loss_min": c0 - c1 * c1 / (4 * c2),
        "curvature": c2,
        "extrapolated": not n.min() <= n_opt <= n.max(),
    }
    return row, diags


def _ols(log_c: np.ndarray, log_y: np.ndarray):
    return sm.OLS(log_y, sm.add_constant(log_c, has_constant="add")).fit()


@dataclass(frozen=True)
class IsoFLOPFit(Result):
    """Approach 2. params: n_exponent, d_exponent (Hoffmann's a, b), n_coef, d_coef with
    N_opt = n_coef·C^n_exponent, D_opt = d_coef·C^d_exponent (C in FLOPs); intervals 95% (OLS).
    slices: one dict per budget (flops, n_opt and its delta-method interval, d_opt, loss_min,
    curvature, extrapolated, ...)."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]
    slices: tuple[dict[str, Any], ...] = ()

    def predict(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at training compute `flops`."""
        c = np.atleast_1d(np.asarray(flops, float))
        p = self.params
        return p["n_coef"] * c ** p["n_exponent"], p["d_coef"] * c ** p["d_exponent"]

    optimal = predict

    def optimal_intervals(self, flops, level: float = 0.95) -> dict[str, np.ndarray]:
        """95% confidence intervals of the fitted power laws (mean, not a new run) at `flops`:
        {"n": (2, m), "d": (2, m)}."""
        log_c = np.log(np.atleast_1d(np.asarray(flops, float)))
        lc = np.log([s["flops"] for s in self.slices])
        out = {}
        for key in ("n", "d"):
            res = _ols(lc, np.log([s[f"{key}_opt"] for s in self.slices]))
            exog = sm.add_constant(log_c, has_constant="add")
            ci = res.get_prediction(exog).conf_int(alpha=1 - level)
            out[key] = np.exp(ci.T)
        return out


def fit_isoflop(
    frame: pl.DataFrame,
    *,
    budget_col: str | None = None,
    gap_dex: float = 0.1,
    params_col: str | None = None,
    tokens_col: str = "tokens_seen",
    loss_col: str = "final_eval_loss",
    flops_col: str = "flops_per_token",
    compute: str = "6ND",
    statuses: tuple[str, ...] | None = ("completed",),
    on_bad_slice: str = "raise",
) -> IsoFLOPFit:
    """Approach 2 (module doc). Slices: the values of `budget_col` (e.g. a requested-budget
    grid column), else runs whose log10 C lie within `gap_dex` of their neighbours. A slice's
    C is the geometric mean of its runs' C under `compute`; D_opt = C/(FLOPs per token at
    N_opt), the latter interpolated log-linearly in N over the slice (exactly 6·N_opt under
    "6ND"). A slice with < 3 distinct N or a parabola opening downward raises ValueError, or,
    with on_bad_slice="skip", is dropped with a SLICE_SKIPPED warning. ValueError with fewer
    than 3 usable slices (the power laws need 3 for an interval)."""
    if on_bad_slice not in ("raise", "skip"):
        raise ValueError(f"on_bad_slice={on_bad_slice!r}: use 'raise' or 'skip'")
    t = runs_table(
        frame,
        params_col=params_col,
        tokens_col=tokens_col,
        loss_col=loss_col,
        flops_col=flops_col,
        compute=compute,
        statuses=statuses,
        group_col=budget_col,
    )
    rows, diags = [], []
    for label, idx in _slices(t, budget_col is not None, gap_dex):
        try:
            row, d = _parabola(label, t, idx)
        except ValueError as e:
            if on_bad_slice == "raise":
                raise
            diags.append(Diagnostic("SLICE_SKIPPED", "warning", str(e), "see the message", label))
            continue
        rows.append(row)
        diags.extend(d)
    if len(rows) < 3:
        raise ValueError(
            f"approach 2 needs >= 3 usable isoFLOP slices to fit N_opt ∝ C^a with an interval, "
            f"got {len(rows)} (from {t.loss.size} runs); add budgets, or pass budget_col"
        )
    log_c = np.log([r["flops"] for r in rows])
    params, intervals, fit_metrics = {}, {}, {}
    for key in ("n", "d"):
        res = _ols(log_c, np.log([r[f"{key}_opt"] for r in rows]))
        ci = res.conf_int(0.05)
        params[f"{key}_exponent"] = float(res.params[1])
        params[f"{key}_coef"] = float(np.exp(res.params[0]))
        intervals[f"{key}_exponent"] = (float(ci[1][0]), float(ci[1][1]))
        intervals[f"{key}_coef"] = (float(np.exp(ci[0][0])), float(np.exp(ci[0][1])))
        fit_metrics[f"r2_{key}"] = float(res.rsquared)
        diags += wide_interval(f"{key}_exponent", params[f"{key}_exponent"], *ci[1])
    for r in rows:  # N_opt uncertain by more than a factor of about 2
        lo, hi = r["n_opt_lo"], r["n_opt_hi"]
        diags += wide_interval("N_opt", r["n_opt"], lo, hi, "add runs near the minimum", r["label"])
    info = {
        "method": "approach 2: parabola of loss in ln N per isoFLOP slice, then OLS of "
        "ln N_opt and ln D_opt on ln C",
        "reference": f"{HOFFMANN} §3.2",
        "interval_method": "N_opt: delta method on the parabola's OLS covariance, t(n-3) "
        "quantile; exponents and coefficients: statsmodels OLS 95% intervals",
        "slicing": f"by column {budget_col!r}" if budget_col else f"gaps > {gap_dex} dex in C",
        "flops_range": [float(min(r["flops"] for r in rows)), float(max(r["flops"] for r in rows))],
        **t.info,
    }
    return IsoFLOPFit(
        params=params,
        intervals=intervals,
        metrics=fit_metrics
        | {"n_slices": len(rows), "n_points": int(sum(r["n_points"] for r in rows))},
        diagnostics=tuple(diags),
        info=info,
        slices=tuple(rows),
    )


# --------------------------------------------------------------------------- side by side


def _disjoint(a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float):
    """True/False when intervals (or a point and an interval) do not/do overlap; None when
    neither side has an interval. None bounds (NaN after a JSON round trip) count as NaN."""
    a_lo, a_hi, b_lo, b_hi = (np.nan if v is None else v for v in (a_lo, a_hi, b_lo, b_hi))
    has_a, has_b = np.isfinite(a_lo) and np.isfinite(a_hi), np.isfinite(b_lo) and np.isfinite(b_hi)
    if has_a and has_b:
        return bool(a_hi < b_lo or b_hi < a_lo)
    if has_a:
        return bool(not a_lo <= b <= a_hi)
    if has_b:
        return bool(not b_lo <= a <= b_hi)
    return None


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
        dis = _disjoint(s["n_opt"], s["n_opt_lo"], s["n_opt_hi"], m3, lo3, hi3)
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
    if _disjoint(e2, *i2, e3, *i3):
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
class Proposal(Result):
    """Compute-optimal size for one budget. params: flops, n, d (= tokens, float), tokens
    (rounded), tokens_per_param, and loss (approach 3 only); intervals 95%."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]

    def predict(self) -> tuple[float, float]:
        """(N, D) proposed."""
        return self.params["n"], self.params["d"]


def propose_size(fit: ChinchillaFit | IsoFLOPFit, flops: float) -> Proposal:
    """The compute-optimal N and D (tokens) for a training budget of `flops` FLOPs (in the
    fit's own convention), with 95% intervals and the distance in decades outside the fitted
    compute range (EXTRAPOLATION warning when outside)."""
    flops = float(flops)
    if not (math.isfinite(flops) and flops > 0):
        raise ValueError(f"flops = {flops}: a budget must be finite and > 0")
    if not isinstance(fit, ChinchillaFit | IsoFLOPFit):
        raise TypeError(f"propose_size takes a ChinchillaFit or IsoFLOPFit, not {type(fit)}")
    n, d = (float(v[0]) for v in fit.optimal(flops))
    ci = fit.optimal_intervals(flops)
    params = {"flops": flops, "n": n, "d": d, "tokens": int(round(d)), "tokens_per_param": d / n}
    intervals = {"n": tuple(ci["n"][:, 0]), "d": tuple(ci["d"][:, 0])}
    intervals["tokens_per_param"] = (
        tuple(ci["tokens_per_param"][:, 0])
        if "tokens_per_param" in ci
        else (intervals["d"][0] / intervals["n"][1], intervals["d"][1] / intervals["n"][0])
    )
    if isinstance(fit, ChinchillaFit):
        params["loss"] = float(fit.predict(n, d)[0])
        intervals["loss"] = tuple(ci["loss"][:, 0])
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
    return Proposal(
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
            "interval_method": "bootstrap percentiles of the closed form"
            if approach == 3
            else "OLS confidence interval of the fitted power laws",
            "tokens_per_param_interval": "bootstrap" if approach == 3 else "from N and D bounds",
            "fit_warnings": sorted({x.code for x in fit.warnings}),
        },
    )
