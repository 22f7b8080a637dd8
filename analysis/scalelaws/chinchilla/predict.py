"""Prediction intervals of Chinchilla's answers (docs/laws.md §7 "Prediction intervals",
docs/chinchilla.md): a core Prediction per question, seeded and deterministic.

- Loss of a run at (N, D), approach 3: L(N, D) at every bootstrap parameter set of the fit
  (ChinchillaFit.samples) plus a log residual of the fit drawn at random (ln L − ln L̂, inflated
  by √(n/(n − p)), p = 5, or 4 with E held), mixed by core.prediction.predictive_interval.
- N*, D* at a budget C, approach 3: the closed form at every bootstrap parameter set,
  percentiles. No residual term: approach 3 has no measured optima to scatter, so this is the
  uncertainty of the law's optimum, not of an isoFLOP slice's fitted vertex.
- The loss of a run trained at the approach-3 optimum of C: the loss interval at (N*, D*).
- N_opt, D_opt at C, approach 2: N_opt = n_coef·C^a at every bootstrap draw of (a, ln n_coef)
  (IsoFLOPFit.samples), spread about the estimate by the fit's interval_scale
  (max(1, √(χ²/dof)), as its intervals are), plus a residual of the used slices' ln N_opt about
  the fitted line drawn at random (p = 2): an interval for the fitted optimum of a new slice.
  Without samples (n_boot=0) the OLS t-interval of ln N_opt on ln C.
"""

from __future__ import annotations

import math

import numpy as np

from scalelaws.chinchilla.law import LAW, optimal
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.prediction import (
    Prediction,
    check_level,
    ols_interval,
    predictive_interval,
    residuals_only,
)

QUANTITIES = ("n", "d", "loss")


def _positive(name: str, v) -> np.ndarray:
    a = np.atleast_1d(np.asarray(v, float)).ravel()
    if a.size == 0 or not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"prediction: every {name} must be finite and > 0")
    return a


def _extrapolation(fit, flops: np.ndarray) -> tuple[Diagnostic, ...]:
    lo, hi = fit.info["flops_range"]
    far = flops[(flops > hi * 1.0001) | (flops < lo / 1.0001)]
    if far.size == 0:
        return ()
    dist = max(abs(math.log10(c / hi)) if c > hi else abs(math.log10(c / lo)) for c in far)
    return (
        Diagnostic(
            "EXTRAPOLATION",
            "info",
            f"{far.size} of {flops.size} predictions at compute outside the fitted range "
            f"[{lo:.3g}, {hi:.3g}], up to {dist:.2f} decades",
            "the intervals assume the law holds there; back-test it (scalelab backtest)",
        ),
    )


def loss_prediction(fit, n, d, *, level: float = 0.9, seed: int = 0) -> Prediction:
    """Loss of a run at model size `n` and tokens `d` (broadcast) from an approach-3 fit, with
    `level` prediction intervals (module doc)."""
    level = check_level(level)
    n, d = np.broadcast_arrays(_positive("n", n), _positive("d", d))
    x = (np.log(n), np.log(d))
    point = LAW.predict(fit.theta, x)
    s = np.asarray(fit.samples, float).reshape(-1, 5)
    draws = np.array([LAW.predict(th, x) for th in s]) if s.size else None
    p = 4 if fit.info.get("fix_e") is not None else 5
    res = np.asarray(fit.log_residuals, float)
    point, lo, hi = predictive_interval(
        point, draws, res, level=level, log=True, n_params=p, seed=seed
    )
    diags = _extrapolation(fit, fit.info["flops_per_nd"] * n * d)
    if draws is None:
        diags += (residuals_only("refit with n_boot > 0"),)
    return Prediction(
        x=np.column_stack([n, d]),
        point=point,
        lo=lo,
        hi=hi,
        level=level,
        diagnostics=diags,
        info={
            "quantity": "loss",
            "approach": 3,
            "x": "params, tokens",
            "method": "L(N, D) at each bootstrap parameter set plus a resampled log residual "
            "(inflated by sqrt(n/(n-p))), Monte Carlo quantiles",
            "draws": int(len(s)),
            "residuals": int(res.size),
            "n_params": p,
            "log_space": True,
            "seed": seed,
        },
    )


def optimum_prediction(
    fit, flops, *, quantity: str = "n", level: float = 0.9, seed: int = 0
) -> Prediction:
    """Approach 3 at budget(s) `flops`: N* ("n"), D* ("d") with percentile intervals of the
    bootstrap parameter sets, or the loss of a run trained at (N*, D*) ("loss"; module doc)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity={quantity!r}: use one of {', '.join(QUANTITIES)}")
    level = check_level(level)
    c = _positive("flops", flops)
    n, d = fit.optimal(c)
    if quantity == "loss":
        p = loss_prediction(fit, n, d, level=level, seed=seed)
        info = p.info | {"at": "the approach-3 optimum (N*, D*) of each budget"}
        return Prediction(x=c, point=p.point, lo=p.lo, hi=p.hi, level=level,
                          diagnostics=p.diagnostics, info=info)  # fmt: skip
    if not fit.samples:
        raise ValueError(
            "prediction: this approach-3 fit has no bootstrap samples (n_boot=0), so N*, D* "
            "have no interval; refit with n_boot > 0"
        )
    s = np.asarray(fit.samples, float)
    sn, sd = optimal(s, c, fit.info["flops_per_nd"])
    v = sn if quantity == "n" else sd
    q = [50 * (1 - level), 100 - 50 * (1 - level)]
    lo, hi = np.nanpercentile(v, q, axis=0)
    point = n if quantity == "n" else d
    return Prediction(
        x=c,
        point=point,
        lo=lo,
        hi=hi,
        level=level,
        diagnostics=_extrapolation(fit, c),
        info={
            "quantity": "N*" if quantity == "n" else "D*",
            "approach": 3,
            "x": "flops",
            "method": "closed-form optimum at each bootstrap parameter set, percentiles; no "
            "residual term (approach 3 has no measured optima): the law's optimum, not a "
            "slice's fitted vertex",
            "draws": int(len(s)),
            "seed": seed,
        },
    )


def isoflop_prediction(
    fit, flops, *, quantity: str = "n", level: float = 0.9, seed: int = 0
) -> Prediction:
    """Approach 2 at budget(s) `flops`: N_opt ("n") or D_opt ("d") with `level` prediction
    intervals for a new slice's fitted optimum (module doc)."""
    if quantity not in ("n", "d"):
        raise ValueError(f"quantity={quantity!r}: approach 2 predicts 'n' or 'd'")
    level = check_level(level)
    c = _positive("flops", flops)
    lc = np.log([s["flops"] for s in fit.slices])
    y = np.log([s[f"{quantity}_opt"] for s in fit.slices])
    slope, coef = fit.params[f"{quantity}_exponent"], fit.params[f"{quantity}_coef"]
    point = coef * c**slope
    resid = y - math.log(coef) - slope * lc
    info = {
        "quantity": "N_opt" if quantity == "n" else "D_opt",
        "approach": 2,
        "x": "flops",
        "slices": int(lc.size),
        "log_space": True,
        "seed": seed,
    }
    if fit.samples:
        s = np.asarray(fit.samples, float)
        j = 0 if quantity == "n" else 2
        grow = float(fit.metrics.get("interval_scale", 1.0))
        a = slope + grow * (s[:, j] - slope)
        b = math.log(coef) + grow * (s[:, j + 1] - math.log(coef))
        draws = np.exp(b[:, None] + a[:, None] * np.log(c))
        point, lo, hi = predictive_interval(
            point, draws, resid, level=level, log=True, n_params=2, seed=seed
        )
        info |= {
            "method": "power law at each bootstrap draw of (exponent, ln coef), spread by "
            f"interval_scale {grow:.3g}, plus a resampled residual of the slices' optima about "
            "the line (inflated by sqrt(n/(n-2))), Monte Carlo quantiles",
            "draws": int(len(s)),
            "residuals": int(resid.size),
        }
    else:
        _, lo, hi, ols = ols_interval(lc, y, np.log(c), level=level)
        lo, hi = np.exp(lo), np.exp(hi)
        info |= ols | {"method": "OLS t-interval of ln optimum on ln C (fit without bootstrap)"}
    return Prediction(
        x=c,
        point=point,
        lo=lo,
        hi=hi,
        level=level,
        diagnostics=_extrapolation(fit, c),
        info=info,
    )
