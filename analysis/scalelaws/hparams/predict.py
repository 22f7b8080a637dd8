"""Predictions of the hyperparameter laws at a new (N, D): η* and B* with prediction intervals,
and the loss penalty of running at another (η, B) (docs/laws.md §9.5, §7 "Prediction
intervals").

predict: each target answers with its primary law (scaling.primary: the (N, D) form, else D or
N alone, else C = 6ND) and the interval of a new cell's optimum (OLS on logs:
ŷ ± t·σ̂·√(1 + h)); every other fitted form is given beside it under its key ("lr~C", ...).

penalty: ΔL = ½·δᵀ·H·δ, δ = (ln η − ln η*, ln B − ln B*) at the predicted optimum, with H the
curvature pooled over cells (surface.pooled_curvature: elementwise median of each cell's
Hessian in (ln η, ln B)); relative = ½·δᵀ·H_rel·δ with H_rel the median of H/L* (so the share
of the loss, without a law of L*). Its interval is the range of ΔL over the cells' own
Hessians: how much the shape of the optimum varies across N and D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.prediction import check_level
from scalelaws.core.result import Result
from scalelaws.hparams import law
from scalelaws.hparams.checks import forms_disagree, prediction_checks
from scalelaws.hparams.scaling import SYMBOL, law_prediction, primary


@dataclass(frozen=True, eq=False)
class HparamsPrediction(Result):
    """η* and B* at one (N, D). params: "lr", "batch" (the primary form) and every fitted
    form's value under its key ("lr~ND", "lr~C", "batch~D", ...); intervals: the same keys,
    `level` prediction intervals; info: form (the primary form per target), params, tokens,
    flops, level, batch_unit."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return law.num(self.params["lr"])

    @property
    def batch(self) -> float:
        return law.num(self.params["batch"])


@dataclass(frozen=True, eq=False)
class HparamsPenalty(Result):
    """The predicted loss increase of (η, B) over the optimum at (N, D). params: nats,
    relative (share of the loss), delta_ln_lr, delta_ln_batch, lr_opt, batch_opt; intervals:
    nats and relative over the cells' own curvatures (min, max); info: the pooled Hessian."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


def _point(name: str, v) -> float:
    ok = isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v) and v > 0
    if not ok:
        raise ValueError(f"{name}={v!r}: must be one finite number > 0")
    return float(v)


def predict(fit, params, tokens, level: float = 0.9) -> HparamsPrediction:
    """η* and B* at N = `params`, D = `tokens` with `level` prediction intervals (module doc).
    A target without a fitted law gets NaN and a diagnostic saying why; both without: error."""
    level = check_level(level)
    n, d = _point("params", params), _point("tokens", tokens)
    laws = fit.laws
    vals, ivs, diags, form = {}, {}, [], {}
    used = []
    for target in ("lr", "batch"):
        main = primary(laws, target)
        if main is None:
            vals[target], ivs[target], form[target] = math.nan, (math.nan, math.nan), None
            diags.append(_no_law(fit, target))
            continue
        used.append(main)
        form[target] = main["form"]
        for key, one in laws.items():
            if one["target"] != target:
                continue
            p, lo, hi = (float(a[0]) for a in law_prediction(one, n, d, level))
            vals[key], ivs[key] = p, (lo, hi)
        key = f"{target}~{main['form']}"
        vals[target], ivs[target] = vals[key], ivs[key]
        if main["form"] != "C" and f"{target}~C" in laws:
            c = f"{target}~C"
            diags += forms_disagree(target, (vals[key], *ivs[key]), (vals[c], *ivs[c]), level)
    if not used:
        raise ValueError(
            "predict: no law of lr* or B* was fitted; see the fit's diagnostics (too few cells "
            "that locate an optimum)"
        )
    diags = list(prediction_checks(used, n, d)) + diags
    info = {
        "form": form,
        "params": n,
        "tokens": d,
        "flops": float(law.compute(n, d)),
        "level": level,
        "batch_unit": fit.info.get("batch_unit"),
        "method": "OLS prediction interval of a new cell's optimum, on logs",
    }
    return HparamsPrediction(vals, ivs, {}, tuple(diags), info)


def _no_law(fit, target: str) -> Diagnostic:
    sym = SYMBOL[target]
    why = [d.message for d in fit.diagnostics if d.subject == f"{target} laws"]
    msg = f"no law of {sym} was fitted" + (f" ({why[0]})" if why else "") + ": it is not predicted"
    return Diagnostic(
        "FIT_SKIPPED", "warning", msg, "add cells whose sweep brackets the optimum", target
    )


def penalty(fit, params, tokens, lr, batch=None) -> HparamsPenalty:
    """The loss increase of running at peak LR `lr` and batch size `batch` (None: at B*)
    instead of the predicted optimum at (N, D) = (`params`, `tokens`) (module doc)."""
    lr = _point("lr", lr)
    pred = predict(fit, params, tokens)
    diags = list(pred.diagnostics)
    dx = math.log(lr) - math.log(pred.lr) if np.isfinite(pred.lr) else math.nan
    if batch is None:
        dy = 0.0
    else:
        batch = _point("batch", batch)
        dy = math.log(batch) - math.log(pred.batch) if np.isfinite(pred.batch) else math.nan
    curv = fit.curvature
    h, hr = np.asarray(curv["hessian"], float), np.asarray(curv["relative"], float)
    nats = float(law.penalty(h, dx, dy))
    rel = float(law.penalty(hr, dx, dy))
    per_cell = []
    for c in fit.cells:
        own = np.array([[law.num(v) for v in row] for row in c["hessian"]])
        p = float(law.penalty(own, dx, dy))
        if np.isfinite(p) and law.num(c["loss_opt"]) > 0:
            per_cell.append((p, p / law.num(c["loss_opt"])))
    iv_n = (min(p for p, _ in per_cell), max(p for p, _ in per_cell)) if per_cell else None
    iv_r = (min(r for _, r in per_cell), max(r for _, r in per_cell)) if per_cell else None
    if not np.isfinite(nats):
        diags.append(
            Diagnostic(
                "FIT_SKIPPED",
                "warning",
                "no penalty: the optimum or the curvature along a changed axis is unknown (no "
                "law of that optimum, or no cell with a minimum along it)",
                "sweep >= 3 values of that hyperparameter in >= 4 cells",
                "penalty",
            )
        )
    diags += _outside_grid(fit.cells, dx, dy)
    params_out = {
        "nats": nats,
        "relative": rel,
        "delta_ln_lr": dx,
        "delta_ln_batch": dy,
        "lr_opt": pred.lr,
        "batch_opt": pred.batch,
    }
    info = {
        "hessian": curv["hessian"],
        "relative_hessian": curv["relative"],
        "pooling": curv["method"],
        "cells_in_interval": len(per_cell),
        "form": pred.info["form"],
        "params": pred.info["params"],
        "tokens": pred.info["tokens"],
    }
    ivs = {"nats": iv_n, "relative": iv_r} if per_cell else {}
    return HparamsPenalty(params_out, ivs, {}, tuple(diags), info)


def _outside_grid(cells, dx: float, dy: float) -> tuple[Diagnostic, ...]:
    """EXTRAPOLATION when a step off the optimum exceeds half the widest sweep (in ln) of that
    axis: the quadratic was not fitted that far from its minimum."""
    out = []
    for axis, delta in (("lr", dx), ("batch", dy)):
        spans = [c["range"][axis][1] - c["range"][axis][0] for c in cells]
        half = max(spans) / 2 if spans else 0.0
        if np.isfinite(delta) and delta != 0 and abs(delta) > half:
            out.append(
                Diagnostic(
                    "EXTRAPOLATION",
                    "warning",
                    f"{axis} is a factor {math.exp(abs(delta)):.3g} from its optimum, beyond "
                    f"half the widest sweep (a factor {math.exp(half):.3g}): the quadratic "
                    "penalty is extrapolated (real losses usually rise faster)",
                    "measure one run at that setting before relying on the penalty",
                    f"penalty {axis}",
                )
            )
    return tuple(out)
