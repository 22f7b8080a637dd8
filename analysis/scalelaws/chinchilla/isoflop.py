"""Chinchilla approach 2: isoFLOP profiles (Hoffmann et al. 2022, arXiv 2203.15556, §3.2),
done the careful way (Porian et al. 2024, arXiv 2406.19146; docs/laws.md §4.2).

Per FLOP budget (slice), a parabola of final loss in ln N fitted near the slice's lowest
measured loss only (a window of `window_dex` decades of N, at least `min_sizes` sizes; Huber
IRLS), its vertex N_opt (95% interval by the delta method); a slice whose lowest loss is at
its smallest or largest size, or whose vertex falls outside the sizes fitted, is not
bracketed and is left out (OPTIMUM_NOT_BRACKETED) unless `keep_unbracketed`. Then
N_opt ∝ C^n_exponent and D_opt ∝ C^d_exponent by weighted least squares on logs, each slice
weighted by 1/var(ln N_opt) from a residual bootstrap over its runs
(scalelaws.chinchilla.slices); 95% intervals are bootstrap percentiles of the refitted
exponent, widened by √(χ²/dof) when the slices scatter about the power law more than their
bootstrap errors allow (NOPT_SCATTER). window_dex=None, robust=False, keep_unbracketed=True,
n_boot=0 is the textbook version: one parabola over every run, OLS intervals.
Hoffmann's a and b are our n_exponent and d_exponent.

FLOPs convention (`compute`): "6ND" (C = 6·N·D), "flops_per_token" (C = flops_per_token·D,
from the model shape: 6N + attention) or "total" (a total-FLOPs column). Porian et al. 2024
show that the choice moves the fitted exponent, so it is an argument of every fit and is
stated in every result's info.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import statsmodels.api as sm

from scalelaws.chinchilla.checks import slice_checks, wide_interval
from scalelaws.chinchilla.law import HOFFMANN, PORIAN
from scalelaws.chinchilla.runs import ChinchillaRuns, chinchilla_runs
from scalelaws.chinchilla.slices import SliceFit, draws, fit_slice, noise_scales
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


def _ols(log_c: np.ndarray, log_y: np.ndarray, weights=None):
    exog = sm.add_constant(log_c, has_constant="add")
    if weights is None:
        return sm.OLS(log_y, exog).fit()
    return sm.WLS(log_y, exog, weights=np.asarray(weights, float)).fit()


def _wls(lc: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares (slope, intercept) of each column of y (S,) or (S, B) on lc."""
    wn = w / w.sum()
    xm = float(wn @ lc)
    xc = lc - xm
    slope = (wn * xc) @ y / float(wn @ (xc * xc))
    return slope, wn @ y - slope * xm


@dataclass(frozen=True)
class IsoFLOPFit(Result):
    """Approach 2. params: n_exponent, d_exponent (Hoffmann's a, b), n_coef, d_coef with
    N_opt = n_coef·C^n_exponent, D_opt = d_coef·C^d_exponent (C in FLOPs); intervals 95%
    (bootstrap, info interval_method). slices: one dict per budget used (flops, n_opt and its
    delta-method interval n_opt_lo/hi, its bootstrap interval n_opt_boot_lo/hi, ln_n_opt_sd,
    weight, d_opt, loss_min, curvature, the window fitted, bracketed, extrapolated, ...).
    dropped: the slices left out of the exponents (label, flops, N range, reason). samples:
    the bootstrap refits (n_exponent, ln n_coef, d_exponent, ln d_coef), before the widening by
    metrics interval_scale, kept for prediction intervals at new budgets (empty with n_boot=0)."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]
    slices: tuple[dict[str, Any], ...] = ()
    dropped: tuple[dict[str, Any], ...] = ()
    samples: tuple[tuple[float, ...], ...] = ()

    def predict(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at training compute `flops`."""
        c = np.atleast_1d(np.asarray(flops, float))
        p = self.params
        return p["n_coef"] * c ** p["n_exponent"], p["d_coef"] * c ** p["d_exponent"]

    optimal = predict

    def optimal_intervals(self, flops, level: float = 0.95) -> dict[str, np.ndarray]:
        """95% confidence intervals of the fitted power laws (mean, not a new run) at `flops`,
        from weighted least squares with the slices' weights: {"n": (2, m), "d": (2, m)}."""
        log_c = np.log(np.atleast_1d(np.asarray(flops, float)))
        lc = np.log([s["flops"] for s in self.slices])
        out = {}
        for key in ("n", "d"):
            w = [s.get("weight", 1.0) for s in self.slices]
            res = _ols(lc, np.log([s[f"{key}_opt"] for s in self.slices]), w)
            exog = sm.add_constant(log_c, has_constant="add")
            ci = res.get_prediction(exog).conf_int(alpha=1 - level)
            out[key] = np.exp(ci.T)
        return out

    def prediction(self, flops, *, quantity: str = "n", level: float = 0.9, seed: int = 0):
        """N_opt (quantity "n") or D_opt ("d") at training compute `flops` with `level`
        prediction intervals for a new slice's fitted optimum: a core Prediction (bootstrap
        draws of the power law plus the slices' scatter about it; scalelaws.chinchilla.predict)."""
        from scalelaws.chinchilla.predict import isoflop_prediction

        return isoflop_prediction(self, flops, quantity=quantity, level=level, seed=seed)


def _power_laws(fits: list[SliceFit], n_boot: int, seed: int, robust: bool):
    """(params, intervals, metrics, diagnostics, info) of N_opt ∝ C^a and D_opt ∝ C^b from the
    used slices (module doc). n_boot = 0: unweighted OLS and its t intervals."""
    lc = np.log([f.row["flops"] for f in fits])
    ln = {"n": np.log([f.row["n_opt"] for f in fits]), "d": np.log([f.row["d_opt"] for f in fits])}
    params, intervals, out, diags = {}, {}, {}, []
    if n_boot == 0:
        for key, y in ln.items():
            res = _ols(lc, y)
            ci = res.conf_int(0.05)
            params[f"{key}_exponent"], params[f"{key}_coef"] = (
                float(res.params[1]),
                float(np.exp(res.params[0])),
            )
            intervals[f"{key}_exponent"] = (float(ci[1][0]), float(ci[1][1]))
            intervals[f"{key}_coef"] = (float(np.exp(ci[0][0])), float(np.exp(ci[0][1])))
            out[f"r2_{key}"] = float(res.rsquared)
        for f in fits:
            f.row["weight"] = 1.0 / len(fits)
        how = "OLS of ln N_opt and ln D_opt on ln C, t intervals"
        return params, intervals, out, diags, how, ()
    rng = np.random.default_rng(seed)
    sds, z = noise_scales(fits)
    bn = np.array([draws(f, v, z, n_boot, rng, robust) for f, v in zip(fits, sds, strict=True)])
    ok = np.isfinite(bn).all(axis=0)
    failed = int(n_boot - ok.sum())
    if failed:
        diags.append(Diagnostic(
            "BOOTSTRAP_FAILURES", "warning" if failed > 0.05 * n_boot else "info",
            f"{failed} of {n_boot} bootstrap draws had a slice whose parabola opened downward; "
            "they were skipped", "many failures mean slices too noisy for their curvature",
        ))  # fmt: skip
    if ok.sum() < 20:
        raise ValueError(
            f"approach 2: only {int(ok.sum())} of {n_boot} bootstrap draws gave every slice a "
            "minimum; the slices are too noisy for their curvature (add runs near each minimum)"
        )
    bn = bn[:, ok]
    q25, q75 = np.percentile(bn, [25, 75], axis=1)
    sd = (q75 - q25) / 1.349
    sd = np.maximum(sd, max(0.2 * float(np.median(sd)), 1e-6))
    w = 1.0 / sd**2
    bd = np.array(
        [c - np.polyval(f.row["fpt_fit"], b) for f, c, b in zip(fits, lc, bn, strict=True)]
    )
    scatter, kept = {}, []
    for key, y, yb in (("n", ln["n"], bn), ("d", ln["d"], bd)):
        slope, icpt = _wls(lc, y, w)
        sb, ib = _wls(lc, yb, w)
        kept += [sb, ib]
        chi2 = float(w @ (y - slope * lc - icpt) ** 2)
        red = chi2 / (len(fits) - 2)
        grow = max(1.0, float(np.sqrt(red)))
        scatter[key] = (red, grow)
        for name, est, boot, tr in (("exponent", slope, sb, float), ("coef", icpt, ib, np.exp)):
            lo, hi = np.percentile(boot, [2.5, 97.5])
            lo, hi = est - grow * (est - lo), est + grow * (hi - est)
            params[f"{key}_{name}"] = float(tr(est))
            intervals[f"{key}_{name}"] = (float(tr(lo)), float(tr(hi)))
        resid = y - slope * lc - icpt
        out[f"r2_{key}"] = float(1 - (w @ resid**2) / (w @ (y - (w @ y) / w.sum()) ** 2))
    red, grow = scatter["n"]
    out |= {"chi2_red": red, "interval_scale": grow, "boot_failed": failed}
    if red > 4:
        diags.append(Diagnostic(
            "NOPT_SCATTER", "warning",
            f"the slices' N_opt scatter about the power law {np.sqrt(red):.2g}x more than their "
            f"bootstrap errors allow (chi2/dof = {red:.3g}); the exponent intervals are widened "
            f"by {grow:.2g}", "look for slices trained differently; add runs near each minimum",
        ))  # fmt: skip
    lo_b, hi_b = np.percentile(bn, [2.5, 97.5], axis=1)
    for f, s_, wt, lo, hi in zip(fits, sd, w / w.sum(), lo_b, hi_b, strict=True):
        f.row |= {"ln_n_opt_sd": float(s_), "weight": float(wt)}
        f.row |= {"n_opt_boot_lo": float(np.exp(lo)), "n_opt_boot_hi": float(np.exp(hi))}
    how = (
        f"residual bootstrap over runs, noise pooled across slices and shrunk to each ({n_boot} "
        f"draws, seed {seed}); weighted least "
        "squares of ln N_opt and ln D_opt on ln C, weights 1/var(ln N_opt) (bootstrap, floored at "
        "0.2x the median sd); 95% percentile intervals widened by max(1, sqrt(chi2/dof))"
    )
    samples = tuple(tuple(float(v) for v in row) for row in np.column_stack(kept))
    return params, intervals, out, diags, how, samples


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
    window_dex: float | None = 0.6,
    min_sizes: int = 5,
    robust: bool = True,
    keep_unbracketed: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> IsoFLOPFit:
    """Approach 2 (module doc). Slices: the values of `budget_col` (e.g. a requested-budget
    grid column), else runs whose log10 C lie within `gap_dex` of their neighbours. A slice's
    C is the geometric mean of its runs' C under `compute`; D_opt = C/(FLOPs per token at
    N_opt), the latter interpolated log-linearly in N over the slice (exactly 6·N_opt under
    "6ND"). Window: sizes within `window_dex` decades of the lowest loss, at least `min_sizes`
    (None: every run). A slice with < 3 distinct N or a parabola opening downward raises
    ValueError, or, with on_bad_slice="skip", is dropped with a SLICE_SKIPPED warning. An
    unbracketed slice is dropped with OPTIMUM_NOT_BRACKETED (kept, still flagged, with
    `keep_unbracketed`). `n_boot` draws (seeded by `seed`) give the weights and intervals;
    0 gives the OLS of the textbook version. ValueError with fewer than 3 usable slices."""
    if on_bad_slice not in ("raise", "skip"):
        raise ValueError(f"on_bad_slice={on_bad_slice!r}: use 'raise' or 'skip'")
    if min_sizes < 3 or n_boot < 0 or (window_dex is not None and not window_dex > 0):
        raise ValueError(f"min_sizes={min_sizes} (>= 3), n_boot={n_boot} (>= 0), "
                         f"window_dex={window_dex} (> 0 or None): out of range")  # fmt: skip
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
    fits, dropped, diags = [], [], []
    for label, idx in _slices(t, budget_col is not None, gap_dex):
        idx = idx[np.lexsort((t.loss[idx], t.n[idx]))]  # run order does not move the draws
        n, loss, flops = t.n[idx], t.loss[idx], t.flops[idx]
        try:
            f = fit_slice(label, n, loss, flops, t.d[idx], window_dex=window_dex,
                          min_sizes=min_sizes, robust=robust,
                          keep_unbracketed=keep_unbracketed)  # fmt: skip
        except ValueError as e:
            if on_bad_slice == "raise":
                raise
            diags.append(Diagnostic("SLICE_SKIPPED", "warning", str(e), "see the message", label))
            continue
        where = f"isoFLOP slice {label} (C = {f.row['flops']:.3g}, {idx.size} runs)"
        if not f.used:
            kept = " kept (keep_unbracketed): its extrapolated N_opt moves the exponents"
            diags.append(Diagnostic(
                "OPTIMUM_NOT_BRACKETED", "warning",
                f"{where}: {f.reason}, so its minimum is not bracketed by measured sizes;"
                + (kept if keep_unbracketed else " left out of the exponents"),
                "add sizes past that end of the slice" + ("" if keep_unbracketed else
                ", or pass keep_unbracketed to use it anyway"), label,
            ))  # fmt: skip
            if not keep_unbracketed:
                keys = ("label", "flops", "n_points", "n_min", "n_max", "n_opt")
                dropped.append({k: f.row[k] for k in keys} | {"reason": f.reason})
                continue
        fits.append(f)
        diags += slice_checks(where, label, n, flops, f.row["n_opt"], has_interval=f.resid.size > 0)
    if len(fits) < 3:
        raise ValueError(
            f"approach 2 needs >= 3 usable isoFLOP slices to fit N_opt ∝ C^a with an interval, "
            f"got {len(fits)} (from {t.loss.size} runs; {len(dropped)} left out as not "
            "bracketed: add sizes past their ends, or pass keep_unbracketed); add budgets, "
            "or pass budget_col"
        )
    params, intervals, fit_metrics, more, how, samples = _power_laws(fits, n_boot, seed, robust)
    diags += more
    for key in ("n", "d"):
        diags += wide_interval(f"{key}_exponent", params[f"{key}_exponent"],
                               *intervals[f"{key}_exponent"])  # fmt: skip
    rows = [f.row for f in fits]
    for r in rows:  # N_opt uncertain by more than a factor of about 2
        lo, hi = r["n_opt_lo"], r["n_opt_hi"]
        diags += wide_interval("N_opt", r["n_opt"], lo, hi, "add runs near the minimum", r["label"])
    window = (
        "every run of the slice"
        if window_dex is None
        else (f"sizes within {window_dex} decades of the lowest loss, at least {min_sizes}")
    )
    info = {
        "method": "approach 2: parabola of loss in ln N near each isoFLOP slice's minimum "
        f"({'Huber IRLS' if robust else 'least squares'}), then ln N_opt and ln D_opt on ln C",
        "reference": f"{HOFFMANN} §3.2; {PORIAN}",
        "interval_method": "N_opt: delta method on the window's parabola, t(n-3) quantile "
        f"(n_opt_lo/hi); exponents and coefficients: {how}",
        "slicing": f"by column {budget_col!r}" if budget_col else f"gaps > {gap_dex} dex in C",
        "window": window,
        "robust": robust,
        "unbracketed": "kept" if keep_unbracketed else "left out",
        "n_boot": n_boot,
        "seed": seed,
        "flops_range": [float(min(r["flops"] for r in rows)), float(max(r["flops"] for r in rows))],
        **t.info,
    }
    fit_metrics |= {
        "n_slices": len(rows),
        "n_points": int(sum(r["n_points"] for r in rows)),
        "n_fitted": int(sum(r["n_fitted"] for r in rows)),
        "n_dropped": len(dropped),
    }
    return IsoFLOPFit(
        params=params,
        intervals=intervals,
        metrics=fit_metrics,
        diagnostics=tuple(diags),
        info=info,
        slices=tuple(rows),
        dropped=tuple(dropped),
        samples=samples,
    )
