"""One (N, D) cell: a robust quadratic of the final loss over (ln η, ln B), its optimum with a
bootstrap interval, and the curvature pooled across cells (docs/laws.md §9.2, §9.5).

Why a fitted surface, not Step Law's near-optimal set: Step Law's released fitting code keeps
every run within 0.25% of its cell's lowest loss and regresses log η and log B over those
runs. On a sweep of a few LRs a factor ~2 apart that set is mostly the single best run, so
η* is quantised to the grid, and which runs pass 0.25% depends on the loss noise. A quadratic
uses every run of the cell, places the optimum between grid points, gives the curvature the
penalty needs, and a residual bootstrap gives its interval.

Window: a quadratic holds near the minimum only. A wide sweep (Step Law's 12 LRs × 10 batch
sizes, diverged runs at loss 6-7 next to 2.44 at the optimum) is far from quadratic at its
edges, so the surface is fitted to the points within `window` (relative) of the cell's best
loss, and never fewer than MIN_POINTS (the lowest ones). The dropped points stay in the cell
("dropped") for plots; the edge test uses the range of the points fitted.

Fit: statsmodels RLM with Huber's T norm (tuning 1.345·scale) on the point means: Gaussian
noise costs ~5% efficiency, and one bad run (a loss spike, a half-diverged run) is
down-weighted instead of bending the surface. Coordinates are centred, u = ln η − x0,
v = ln B − y0 (x0, y0 the means over points), so the coefficients are well conditioned.

Modes, by the number of distinct values per axis (MIN_VALUES = 3 for a quadratic):
- "2d": both axes >= 3: L = β0 + β1u + β2v + β3u² + β4uv + β5v² (law.py).
- "lr": < 3 batch sizes: L = β1u + β3u² + one intercept per batch size; η* = −β1/(2β3), B* is
  the batch with the lowest intercept (the only one, for a one-batch cell), not located.
- "batch": < 3 LRs: the same with the axes swapped.
- "none": neither axis has 3 values: the best run, nothing located.

Status per axis: "stationary" (the minimum inside the swept range), "conditional" (the other
axis's minimum fell off the grid and was clamped to the best run's value; this axis is the
minimiser at that value), "edge" (the minimum is outside the swept range: the best run's value
is reported, never the extrapolated one), "not_convex" (no minimum), "few_values". Only
"stationary" and "conditional" values enter the scaling laws.

Bootstrap (n_boot resamples, seeded): residual bootstrap keeping the design. Each resample is
fitted + resampled residuals (inflated by √(n/(n−p))), refitted by weighted least squares with
the main fit's final Huber weights (one matrix product for all resamples); the interval is the
2.5–97.5 percentiles of each located coordinate over resamples with a minimum.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from scalelaws.core.prediction import dof_inflation
from scalelaws.hparams import law
from scalelaws.hparams.runs import MIN_VALUES

LOCATED = ("stationary", "conditional")
WINDOW = 0.02  # fit the points within 2% of the cell's best loss (module doc)
MIN_POINTS = 12  # ... and at least the 12 lowest: twice the 2-D quadratic's 6 coefficients


def fit_cell(n, d, lr, batch, loss, count, sd, *, n_boot: int, rng, window=WINDOW) -> dict:
    """The cell's surface and optimum as a JSON-ready dict (keys listed in fit.HparamsFit)."""
    lr, batch, loss = (np.asarray(a, float) for a in (lr, batch, loss))
    count, sd = np.asarray(count), np.asarray(sd, float)
    keep = _window(loss, window)
    dropped = {"lr": lr[~keep].tolist(), "batch": batch[~keep].tolist(),
               "loss": loss[~keep].tolist()}  # fmt: skip
    lr, batch, loss, count, sd = lr[keep], batch[keep], loss[keep], count[keep], sd[keep]
    x, y = np.log(lr), np.log(batch)
    nx, ny = np.unique(x).size, np.unique(y).size
    mode = "2d" if nx >= MIN_VALUES and ny >= MIN_VALUES else "lr" if nx >= MIN_VALUES else "none"
    if mode == "none" and ny >= MIN_VALUES:
        mode = "batch"
    x0, y0 = float(x.mean()), float(y.mean())
    u, v = x - x0, y - y0
    X, levels = _design(mode, u, v)
    if mode == "2d" and (X.shape[0] <= X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]):
        mode = "lr"  # the runs do not span a 2-D quadratic: fit the LR axis with batch offsets
        X, levels = _design(mode, u, v)
    best = int(np.argmin(loss))
    cell = {
        "params": float(n),
        "tokens": float(d),
        "flops": float(law.compute(n, d)),
        "label": f"N={n:.3g},D={d:.3g}",
        "mode": mode,
        "n_lr": int(nx),
        "n_batch": int(ny),
        "points": {
            "lr": list(map(float, lr)),
            "batch": list(map(float, batch)),
            "loss": loss.tolist(),
        },
        "dropped": dropped,
        "window": window,
        "seeds": count.tolist(),
        "best": {"lr": float(lr[best]), "batch": float(batch[best]), "loss": float(loss[best])},
        "center": [x0, y0],
        "levels": levels,
        "range": {
            "lr": [float(x.min()), float(x.max())],
            "batch": [float(y.min()), float(y.max())],
        },
    }
    if mode == "none":
        beta, w, method = np.full(0, np.nan), np.ones_like(loss), "none"
    else:
        beta, w, method = _huber(X, loss)
    cell["coef"], cell["method"] = beta.tolist(), method
    resid = loss - X @ beta if beta.size else np.zeros_like(loss)
    cell["rmse"] = float(np.sqrt(np.mean(resid**2)))
    cell["seed_sd"] = _pooled_sd(sd, count)
    cell |= _optimum(cell, beta, u[best], v[best])
    cell |= _bootstrap(cell, X, beta, w, resid, n_boot, rng)
    return cell


def _window(loss: np.ndarray, window: float) -> np.ndarray:
    """Points within `window` of the best loss, topped up to MIN_POINTS with the next lowest."""
    order = np.argsort(loss, kind="stable")
    keep = loss <= loss[order[0]] * (1 + window)
    keep[order[: min(MIN_POINTS, loss.size)]] = True
    return keep


def _design(mode: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The columns of the cell's quadratic; for a 1-D mode also the other axis's levels (its
    centred values, one intercept each)."""
    if mode == "2d":
        return np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v]), []
    if mode == "none":
        return np.ones((u.size, 1)), []
    a, b = (u, v) if mode == "lr" else (v, u)
    levels = np.unique(b)
    onehot = (b[:, None] == levels[None, :]).astype(float)
    return np.column_stack([a, a * a, onehot]), levels.tolist()


def _huber(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Huber RLM coefficients and final weights; least squares for an exact fit (no residual
    scale for Huber to read) or when RLM does not return finite numbers."""
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ ols
    if X.shape[0] <= X.shape[1] or np.sqrt(np.mean(r * r)) <= 1e-12 * max(1.0, np.abs(y).max()):
        return ols, np.ones_like(y), "least squares (exact fit)"
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.RLM(y, X, M=sm.robust.norms.HuberT()).fit()
    beta, w = np.asarray(res.params, float), np.asarray(res.weights, float)
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(w)) and w.sum() > 0):
        return ols, np.ones_like(y), "least squares (Huber failed)"
    return beta, w, "huber"


def _pooled_sd(sd: np.ndarray, count: np.ndarray) -> float | None:
    """√(Σ(k−1)s² / Σ(k−1)) over points with k >= 2 rows: the seeds' own noise (None: no seeds)."""
    k = np.asarray(count, int)
    m = (k >= 2) & np.isfinite(sd)
    if not m.any():
        return None
    return float(np.sqrt(np.sum((k[m] - 1) * sd[m] ** 2) / np.sum(k[m] - 1)))


def _axes_2d(beta: np.ndarray, ub: float, vb: float, rng_u, rng_v):
    """(u, v, status_u, status_v, stationary (u, v)) of one 2-D surface (module doc)."""
    s = law.stationary(beta)[0]
    if not law.convex(beta)[0]:
        return ub, vb, "not_convex", "not_convex", s
    out_u = not rng_u[0] <= s[0] <= rng_u[1]
    out_v = not rng_v[0] <= s[1] <= rng_v[1]
    if not (out_u or out_v):
        return s[0], s[1], "stationary", "stationary", s
    if out_u and out_v:
        return ub, vb, "edge", "edge", s
    if out_u:  # η* off the grid: B* is the minimiser at the best run's LR
        vc = law.conditional(beta, 1, ub)[0]
        ok = np.isfinite(vc) and rng_v[0] <= vc <= rng_v[1]
        return ub, (vc if ok else vb), "edge", ("conditional" if ok else "edge"), s
    uc = law.conditional(beta, 0, vb)[0]
    ok = np.isfinite(uc) and rng_u[0] <= uc <= rng_u[1]
    return (uc if ok else ub), vb, ("conditional" if ok else "edge"), "edge", s


def _optimum(cell: dict, beta: np.ndarray, ub: float, vb: float) -> dict:
    """The reported optimum (η*, B*, L*), each axis's status, the unclamped stationary point and
    the Hessian in (ln η, ln B) (NaN entries where the mode does not measure them)."""
    x0, y0 = cell["center"]
    rng_u = [r - x0 for r in cell["range"]["lr"]]
    rng_v = [r - y0 for r in cell["range"]["batch"]]
    hess = np.full((2, 2), np.nan)
    mode = cell["mode"]
    if mode == "2d":
        u, v, su, sv, s = _axes_2d(beta, ub, vb, rng_u, rng_v)
        found = su in LOCATED or sv in LOCATED
        loss = float(law.quadratic(beta, u, v)) if found else cell["best"]["loss"]
        if law.convex(beta)[0]:
            hess = law.hessian(beta)[0]
    elif mode in ("lr", "batch"):
        lin, curv = beta[0], beta[1]
        rng_a = rng_u if mode == "lr" else rng_v
        a_best = ub if mode == "lr" else vb
        a = -lin / (2 * curv) if curv > 0 else math.nan
        sa = "not_convex" if curv <= 0 else "stationary" if rng_a[0] <= a <= rng_a[1] else "edge"
        a_rep = a if sa == "stationary" else a_best
        offsets = beta[2:]  # one intercept per level of the other axis: the best is the lowest
        b_rep = cell["levels"][int(np.argmin(offsets))]
        loss = float(lin * a_rep + curv * a_rep**2 + offsets.min())
        if sa != "stationary":  # clamped: the best run, both coordinates
            b_rep, loss = (vb if mode == "lr" else ub), cell["best"]["loss"]
        if curv > 0:
            hess[(0, 0) if mode == "lr" else (1, 1)] = 2 * curv
        u, v = (a_rep, b_rep) if mode == "lr" else (b_rep, a_rep)
        su, sv = (sa, "few_values") if mode == "lr" else ("few_values", sa)
        s = (a, math.nan) if mode == "lr" else (math.nan, a)
    else:
        u, v, su, sv, s = ub, vb, "few_values", "few_values", (math.nan, math.nan)
        loss = cell["best"]["loss"]
    return {
        "lr_opt": _value(cell, "lr", x0 + u, su),
        "batch_opt": _value(cell, "batch", y0 + v, sv),
        "loss_opt": float(loss),
        "lr_status": su,
        "batch_status": sv,
        "stationary": {"lr": float(np.exp(x0 + s[0])), "batch": float(np.exp(y0 + s[1]))},
        "hessian": np.asarray(hess, float).tolist(),
    }


def _value(cell: dict, axis: str, log_value: float, status: str) -> float:
    """exp(log_value); for an axis not located, the swept value itself (no round-off)."""
    if status in LOCATED:
        return float(np.exp(log_value))
    swept = np.asarray(cell["points"][axis], float)
    return float(swept[np.argmin(np.abs(np.log(swept) - log_value))])


def _bootstrap(cell, X, beta, w, resid, n_boot, rng) -> dict:
    """Percentile 95% intervals of each located coordinate (module doc); None where the axis
    is not located or the fit has no residual degrees of freedom."""
    out = {"lr_interval": None, "batch_interval": None, "n_boot": 0, "boot_failed": 0}
    located = [cell["lr_status"] in LOCATED, cell["batch_status"] in LOCATED]
    n, p = X.shape
    if n_boot <= 0 or n <= p or not any(located) or not beta.size:
        return out
    xtw = X.T * w
    proj = np.linalg.solve(xtw @ X, xtw)  # (p, n): β_b = P·y_b, the weighted refit
    fitted = X @ beta
    r = resid * dof_inflation(n, p)
    draws = (fitted + r[rng.integers(0, n, (n_boot, n))]) @ proj.T
    x0, y0 = cell["center"]
    mode = cell["mode"]
    if mode == "2d":
        ub, vb = np.log(cell["lr_opt"]) - x0, np.log(cell["batch_opt"]) - y0
        su, sv = cell["lr_status"], cell["batch_status"]
        s = law.stationary(draws)
        ok = law.convex(draws)
        cu = s[:, 0] if su == "stationary" else law.conditional(draws, 0, vb)
        cv = s[:, 1] if sv == "stationary" else law.conditional(draws, 1, ub)
        coords = [np.where(ok, cu, np.nan), np.where(ok, cv, np.nan)]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(draws[:, 1] > 0, -draws[:, 0] / (2 * draws[:, 1]), np.nan)
        coords = [a, None] if mode == "lr" else [None, a]
    for j, (key, c0) in enumerate((("lr", x0), ("batch", y0))):
        if not located[j] or coords[j] is None:
            continue
        good = coords[j][np.isfinite(coords[j])]
        out["boot_failed"] = max(out["boot_failed"], n_boot - good.size)
        if good.size >= 20:
            lo, hi = np.quantile(good, [0.025, 0.975])
            out[f"{key}_interval"] = [float(np.exp(c0 + lo)), float(np.exp(c0 + hi))]
    out["n_boot"] = n_boot
    return out


def pooled_curvature(cells) -> dict:
    """The Hessian of the loss in (ln η, ln B), pooled over cells: the elementwise median of
    each cell's own Hessian, over the cells that measured that entry with a minimum (a 2-D
    cell whose H is positive definite gives all three entries; an LR-only cell with positive
    curvature gives H_ηη only). Pooling assumes one shape of the optimum across N and D; the
    range of each entry over the cells says how far that holds. Also the relative version,
    H/L* per cell, for the penalty as a share of the loss."""
    entries = {"lr": (0, 0), "batch": (1, 1), "cross": (0, 1)}
    hess, rel = np.full((2, 2), np.nan), np.full((2, 2), np.nan)
    count, spread = {}, {}
    for name, (i, j) in entries.items():
        vals = [
            (law.num(c["hessian"][i][j]), law.num(c["loss_opt"]))
            for c in cells
            if np.isfinite(law.num(c["hessian"][i][j]))
        ]
        count[name] = len(vals)
        if not vals:
            spread[name] = None
            continue
        h = np.array([a for a, _ in vals])
        r = np.array([a / b if b > 0 else np.nan for a, b in vals])
        hess[i, j] = hess[j, i] = float(np.median(h))
        rel[i, j] = rel[j, i] = float(np.nanmedian(r)) if np.isfinite(r).any() else np.nan
        spread[name] = [float(h.min()), float(h.max())]
    return {
        "hessian": hess.tolist(),
        "relative": rel.tolist(),
        "cells": count,
        "range": spread,
        "method": "elementwise median over cells of the Hessian of the loss in (ln lr, ln batch)",
    }


def evaluate(cell: dict, lr, batch) -> np.ndarray:
    """The cell's fitted loss at (lr, batch) (for plots): the quadratic, or in a 1-D mode the
    fitted axis's quadratic plus the nearest level's intercept."""
    beta = np.asarray([law.num(b) for b in cell["coef"]], float)
    x0, y0 = cell["center"]
    u, v = np.log(np.asarray(lr, float)) - x0, np.log(np.asarray(batch, float)) - y0
    if cell["mode"] == "2d":
        return law.quadratic(beta, u, v)
    if cell["mode"] == "none":
        return np.full(np.broadcast(u, v).shape, np.nan)
    a, b = (u, v) if cell["mode"] == "lr" else (v, u)
    levels = np.asarray(cell["levels"], float)
    k = np.abs(np.asarray(b, float)[..., None] - levels).argmin(-1)
    return beta[0] * a + beta[1] * a * a + beta[2:][k]
