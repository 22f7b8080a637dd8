"""Power laws of the cells' optima across N, D and C = 6ND, and their prediction intervals
(docs/laws.md §9.3, §7 "Prediction intervals").

Each law is OLS on logs (statsmodels), as the other scaling fits of scalelaws
(scalelaws.core.powerlaw), in raw units so the coefficients compare with the published ones:

    ln η* = ln a + α·ln N + β·ln D          form "ND"   (Step Law's η(N, D))
    ln η* = ln a + β·ln D                   form "D"    (one N among the cells: Power Lines'
                                                         and Step Law's B(D))
    ln η* = ln a + α·ln N                   form "N"    (one D among the cells)
    ln η* = ln k + e·ln C,  C = 6·N·D       form "C"    (DeepSeek LLM's η(C), B(C))

and the same for B*. Intervals: 95% t-intervals of the coefficients (the coefficient's is exp
of the intercept's). A law is fitted on the cells that locate that optimum (surface.LOCATED);
fewer than MIN_CELLS such cells: not fitted (TOO_FEW_POINTS). The ND form needs >= 2 distinct
N and D that do not vary together (|corr(ln N, ln D)| <= 0.99), else FIT_SKIPPED says why and
the one-variable form (or C alone) is fitted. A new point's prediction interval is the OLS one
for a new cell, ŷ ± t·σ̂·√(1 + h) on logs (scalelaws.core.prediction.ols_interval): the law's
parameter uncertainty and the cells' scatter about it.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.powerlaw import cross_check
from scalelaws.core.prediction import ols_interval
from scalelaws.hparams import law
from scalelaws.hparams.surface import LOCATED

MIN_CELLS = 4  # cells a law needs (3 coefficients of the ND form + 1 degree of freedom)
FORMS = {"ND": ("N", "D"), "D": ("D",), "N": ("N",), "C": ("C",)}
PRIMARY = ("ND", "D", "N")  # predict() answers with the first fitted, then with C
SYMBOL = {"lr": "lr*", "batch": "B*"}


def _logs(n, d) -> dict[str, np.ndarray]:
    n, d = np.asarray(n, float), np.asarray(d, float)
    return {"N": np.log(n), "D": np.log(d), "C": np.log(law.compute(n, d))}


def _raw(n, d) -> dict[str, np.ndarray]:
    n, d = np.asarray(n, float), np.asarray(d, float)
    return {"N": n, "D": d, "C": law.compute(n, d)}


def fit_law(target: str, form: str, n, d, y, labels) -> dict:
    """One power law of `target` ("lr" or "batch") in the variables of `form`, as a JSON-ready
    dict: coef, exponents, their 95% intervals, r2, sigma (residual sd of ln y), the cells and
    the log design (x, y) a prediction interval is computed from."""
    import statsmodels.api as sm

    vars_ = FORMS[form]
    logs = _logs(n, d)
    x = np.column_stack([logs[v] for v in vars_])
    ly = np.log(np.asarray(y, float))
    res = sm.OLS(ly, sm.add_constant(x, has_constant="add")).fit()
    ci = np.asarray(res.conf_int(0.05), float)
    return {
        "target": target,
        "form": form,
        "vars": list(vars_),
        "coef": float(np.exp(res.params[0])),
        "coef_interval": [float(np.exp(ci[0, 0])), float(np.exp(ci[0, 1]))],
        "exponents": {v: float(res.params[i + 1]) for i, v in enumerate(vars_)},
        "exponent_intervals": {v: ci[i + 1].tolist() for i, v in enumerate(vars_)},
        "r2": float(res.rsquared),
        "sigma": float(np.sqrt(res.scale)),
        "n": int(ly.size),
        "cells": list(labels),
        "x": x.tolist(),
        "y": ly.tolist(),
        "range": {k: [float(v.min()), float(v.max())] for k, v in _raw(n, d).items()},
    }


def fit_laws(cells, target: str) -> tuple[dict[str, dict], tuple[Diagnostic, ...]]:
    """Every form of `target`'s law the located cells support ({"lr~ND": law, ...}) and the
    diagnostics saying which were not fitted and why."""
    from scalelaws.hparams.checks import exponent_checks

    use = [c for c in cells if c[f"{target}_status"] in LOCATED]
    sym, what = SYMBOL[target], f"{target} laws"
    if len(use) < MIN_CELLS:
        msg = (
            f"{sym}: {len(use)} of {len(cells)} cells locate it (need {MIN_CELLS}): its power "
            "laws in N, D and C are not fitted"
        )
        act = "add (N, D) cells whose sweep brackets the optimum (see the cells' diagnostics)"
        return {}, (Diagnostic("TOO_FEW_POINTS", "warning", msg, act, what),)
    n = np.array([c["params"] for c in use])
    d = np.array([c["tokens"] for c in use])
    y = np.array([c[f"{target}_opt"] for c in use])
    labels = [c["label"] for c in use]
    forms, diags = _forms(n, d, sym, what)
    laws = {}
    for form in forms:
        key = f"{target}~{form}"
        fit = fit_law(target, form, n, d, y, labels)
        laws[key] = fit
        diags += exponent_checks(key, fit)
        if fit["n"] > len(fit["vars"]) + 1:  # a robust refit needs a spare point
            x = np.asarray(fit["x"], float)
            ivs = [fit["exponent_intervals"][v] for v in fit["vars"]]
            diags += cross_check(key, x, np.asarray(fit["y"]), *ivs)
    return laws, diags


def _forms(n, d, sym: str, what: str) -> tuple[list[str], tuple[Diagnostic, ...]]:
    """The forms the cells support, and FIT_SKIPPED for the ND form when they do not."""
    ln, ld = np.log(n), np.log(d)
    kn, kd = np.unique(n).size, np.unique(d).size
    act = "vary N at fixed D and D at fixed N"
    if kn >= 2 and kd >= 2 and abs(np.corrcoef(ln, ld)[0, 1]) <= 0.99:
        return ["ND", "C"], ()
    if kn >= 2 and kd >= 2:
        msg = (
            f"{sym}: N and D vary together over the cells (|corr(ln N, ln D)| > 0.99): the "
            "(N, D) form cannot separate them; only the compute form C = 6ND is fitted"
        )
        return ["C"], (Diagnostic("FIT_SKIPPED", "warning", msg, act, what),)
    if kd >= 2:
        msg = (
            f"{sym}: one model size among the cells (N = {n[0]:.4g}): the N exponent is not "
            "fitted; the law is a power of D alone (and of C = 6ND, the same line here)"
        )
        return ["D", "C"], (Diagnostic("FIT_SKIPPED", "info", msg, act, what),)
    msg = (
        f"{sym}: one data size among the cells (D = {d[0]:.4g}): the D exponent is not fitted; "
        "the law is a power of N alone (and of C = 6ND, the same line here)"
    )
    return ["N", "C"], (Diagnostic("FIT_SKIPPED", "info", msg, act, what),)


def primary(laws: dict[str, dict], target: str) -> dict | None:
    """The law predict() answers with: the (N, D) form, else D or N alone, else C."""
    for form in (*PRIMARY, "C"):
        if f"{target}~{form}" in laws:
            return laws[f"{target}~{form}"]
    return None


def law_prediction(fit: dict, n, d, level: float = 0.9):
    """(point, lo, hi) of the law `fit` at N = n, D = d (arrays broadcast): the OLS prediction
    interval of a new cell's optimum at `level`, computed on logs and exponentiated."""
    n, d = np.broadcast_arrays(np.atleast_1d(np.asarray(n, float)), np.asarray(d, float))
    logs = _logs(n, d)
    x_new = np.column_stack([logs[v] for v in fit["vars"]])
    x, y = np.asarray(fit["x"], float), np.asarray(fit["y"], float)
    yhat, lo, hi, _ = ols_interval(x, y, x_new, level=level)
    return np.exp(yhat), np.exp(lo), np.exp(hi)
