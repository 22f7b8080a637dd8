"""Chinchilla approach 2: isoFLOP profiles (Hoffmann et al. 2022, arXiv 2203.15556, §3.2).

Per FLOP budget, a parabola of final loss in ln N over the isoFLOP slice; its minimum N_opt
(95% interval by the delta method from the parabola's OLS covariance, t quantile with n − 3
degrees of freedom); then N_opt ∝ C^n_exponent and D_opt ∝ C^d_exponent by OLS on logs
(statsmodels, 95% intervals). Hoffmann's a and b are our n_exponent and d_exponent.

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

from scalelaws.chinchilla.checks import slice_checks, wide_interval
from scalelaws.chinchilla.law import HOFFMANN
from scalelaws.chinchilla.runs import ChinchillaRuns, chinchilla_runs
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result

# --------------------------------------------------------------------------- approach 2


def _slices(t: ChinchillaRuns, by_budget: bool, gap_dex: float) -> list[tuple[str, np.ndarray]]:
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


def _parabola(label: str, t: ChinchillaRuns, idx: np.ndarray) -> tuple[dict[str, Any], list]:
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
    if dof > 0:
        resid = loss - design @ coef
        cov = float(resid @ resid) / dof * np.linalg.inv(design.T @ design)
        g = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2**2)])
        half = stats.t.ppf(0.975, dof) * math.sqrt(max(float(g @ cov @ g), 0.0))
        lo, hi = xs - half, xs + half
    else:
        lo = hi = float("nan")
    # FLOPs per token as a function of N within the slice (exactly 6N under "6ND").
    fpt = np.polyfit(np.log(n), np.log(flops / d), 1)

    def d_at(log_n: float) -> float:
        return c / float(np.exp(np.polyval(fpt, log_n)))

    n_opt = math.exp(xm + xs)
    diags = slice_checks(where, label, n, flops, n_opt, has_interval=dof > 0)
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
    t = chinchilla_runs(
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
