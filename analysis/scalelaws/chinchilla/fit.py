"""Chinchilla approach 3: fit the loss surface L(N, D) = E + A/N^α + B/D^β
(scalelaws.chinchilla.law) to one final loss per run.

Hoffmann et al. 2022 (arXiv 2203.15556) §3.3, as re-fitted by Besiroglu et al. 2024
(arXiv 2404.10102): fit log L̂ = LSE(a − α log N, b − β log D, e) (A = e^a, B = e^b, E = e^e)
with Huber δ = 1e-3 on log L, L-BFGS-B from Besiroglu's grid of 4500 starts. The objective is
evaluated on the whole grid at once and L-BFGS-B runs from the `n_starts` best points only.
Intervals: percentile bootstrap over runs (or over `group_col` groups), each resample refitted
from the full-data optimum. Compute-optimal allocation in closed form for C = k·N·D (k = 6 by
default): N* = G·(C/k)^{β/(α+β)}, D* = (C/k)/N*, G = (αA/(βB))^{1/(α+β)}.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from scalelaws.chinchilla.checks import floor_checks, surface_checks
from scalelaws.chinchilla.law import LAW, LAW_PARAMS, optimal, reported
from scalelaws.chinchilla.runs import chinchilla_runs
from scalelaws.core import checks
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.fitting import DELTA, metrics, minimise, single_blas_thread
from scalelaws.core.result import Result


def besiroglu_grid() -> np.ndarray:
    """Besiroglu et al.'s starts (a, b, e, α, β): a, b ∈ {0, 5, …, 25}, e ∈ {−1, −0.5, …, 1},
    α, β ∈ {0, 0.5, …, 2}: 6·6·5·5·5 = 4500 points."""
    axes = (np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5))
    axes += (np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))
    return np.array(list(itertools.product(*axes)), dtype=float)


def grid_objective(
    grid: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray, ln_loss: np.ndarray, w: np.ndarray, delta
) -> np.ndarray:
    """Σ w·Huber_δ(LSE(a − α ln N, b − β ln D, e) − ln L) for every row of `grid`, vectorised
    in chunks of about 2e6 elements."""
    out = np.empty(len(grid))
    step = max(1, 2_000_000 // max(1, ln_n.size))
    for i in range(0, len(grid), step):
        g = grid[i : i + step]
        pred = np.logaddexp(g[:, [0]] - g[:, [3]] * ln_n, g[:, [1]] - g[:, [4]] * ln_d)
        r = np.logaddexp(pred, g[:, [2]]) - ln_loss
        ar = np.abs(r)
        out[i : i + step] = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)) @ w
    return out


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ChinchillaFit(Result):
    """Approach 3 fit. params: E, A, B, alpha, beta (the law) and n_exponent = β/(α+β),
    d_exponent = α/(α+β), G (the allocation N* = G·(C/k)^n_exponent). intervals: 95% percentile
    bootstrap of all of them. samples: the bootstrap refits in fit coordinates (a, b, e, α, β),
    kept so that intervals at new budgets can be computed after `load`. log_residuals:
    ln L − ln L̂ per run."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, float]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]
    samples: tuple[tuple[float, ...], ...] = ()
    log_residuals: tuple[float, ...] = ()

    @property
    def theta(self) -> np.ndarray:
        p = self.params
        return np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]])

    def predict(self, n, d) -> np.ndarray:
        """Loss L(N, D) = E + A/N^α + B/D^β."""
        x = (np.log(np.asarray(n, float)), np.log(np.asarray(d, float)))
        x = tuple(np.atleast_1d(v) for v in np.broadcast_arrays(*x))
        return LAW.predict(self.theta, x)

    def optimal(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N*, D*) at training compute `flops` (C = k·N·D, k in info)."""
        n, d = optimal(self.theta, np.atleast_1d(flops), self.info["flops_per_nd"])
        return n, d

    def optimal_intervals(self, flops, level: float = 0.95) -> dict[str, np.ndarray]:
        """Percentile intervals of N*, D*, D*/N* and the loss at the optimum from the bootstrap
        samples: {"n": (2, m), "d": (2, m), "tokens_per_param": (2, m), "loss": (2, m)};
        NaN when the fit has no samples."""
        flops = np.atleast_1d(np.asarray(flops, float))
        if not self.samples:
            nan = np.full((2, flops.size), np.nan)
            return {"n": nan, "d": nan, "tokens_per_param": nan, "loss": nan}
        s = np.asarray(self.samples, float)
        n, d = optimal(s, flops, self.info["flops_per_nd"])  # (S, m)
        loss = np.exp(s[:, [0]]) / n ** s[:, [3]] + np.exp(s[:, [1]]) / d ** s[:, [4]]
        loss = loss + np.exp(s[:, [2]])
        q = [50 * (1 - level), 100 - 50 * (1 - level)]
        return {
            name: np.nanpercentile(v, q, axis=0)
            for name, v in (("n", n), ("d", d), ("tokens_per_param", d / n), ("loss", loss))
        }

    def prediction(self, n=None, d=None, *, flops=None, quantity: str | None = None,
                   level: float = 0.9, seed: int = 0):  # fmt: skip
        """A core Prediction with `level` intervals (scalelaws.chinchilla.predict): the loss of
        a run at (n, d) (bootstrap parameter sets plus a resampled log residual), or with
        `flops` the compute-optimal N* (quantity "n", the default), D* ("d") at that budget
        (bootstrap parameter sets: the optimum's own uncertainty), or the loss of a run trained
        there ("loss")."""
        from scalelaws.chinchilla.predict import loss_prediction, optimum_prediction

        if flops is not None:
            if n is not None or d is not None:
                raise ValueError("prediction: give (n, d) for a loss, or flops for N*, D*")
            q = quantity or "n"
            return optimum_prediction(self, flops, quantity=q, level=level, seed=seed)
        if n is None or d is None or quantity not in (None, "loss"):
            raise ValueError("prediction: the loss takes both n and d; N*, D* take flops=")
        return loss_prediction(self, n, d, level=level, seed=seed)


# --------------------------------------------------------------------------- fit


def fit_loss_surface(
    frame: pl.DataFrame,
    *,
    params_col: str | None = None,
    tokens_col: str = "tokens_seen",
    loss_col: str = "final_eval_loss",
    flops_col: str = "flops_per_token",
    compute: str = "6ND",
    statuses: tuple[str, ...] | None = ("completed",),
    group_col: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    delta: float = DELTA,
    n_starts: int = 8,
    fix_e: float | None = None,
    e_floor: float | None = None,
) -> ChinchillaFit:
    """Approach 3: fit L(N, D) = E + A/N^α + B/D^β to one final loss per run (module doc).

    `compute` is the FLOPs convention ("6ND", "flops_per_token", "total"; see COMPUTE); it sets
    the fitted compute range and k in C = k·N·D for the closed-form optimum (k = 6 under "6ND",
    else the median of C/(N·D) over the runs). `delta`: Huber threshold on ln L; δ → 0 (say
    1e-8) is least absolute deviations, which Besiroglu et al.'s published point estimate
    effectively used. `n_boot` = 0 skips the bootstrap (no intervals). `fix_e`: hold E at this
    value (a known floor, e.g. a synthetic grammar's entropy rate in nats/token) and fit the
    other four. `e_floor`: the loss no model can go below; E_IMPLAUSIBLE when the fitted E is
    below it (and, with or without it, when E is above the lowest measured loss).
    ValueError with fewer runs than the law's 5 parameters, or when N or D does not vary.
    """
    t = chinchilla_runs(
        frame,
        params_col=params_col,
        tokens_col=tokens_col,
        loss_col=loss_col,
        flops_col=flops_col,
        compute=compute,
        statuses=statuses,
        group_col=group_col,
    )
    if t.loss.size < len(LAW_PARAMS):
        raise ValueError(
            f"approach 3 fits 5 parameters (E, A, B, alpha, beta) but only {t.loss.size} usable "
            f"runs remain ({t.info['rows']} rows, see info counts): give at least 5 runs"
        )
    for name, v in (("N", t.n), ("D", t.d)):
        if np.unique(v).size < 2:
            raise ValueError(f"{name} takes one value only: its term of L(N, D) cannot be fitted")
    for name, v in (("fix_e", fix_e), ("e_floor", e_floor)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v}: must be finite and > 0 (nats/token)")
    law = LAW
    if fix_e is not None:
        if fix_e >= float(t.loss.min()):
            raise ValueError(
                f"fix_e={fix_e:.4g} is not below the lowest measured loss {t.loss.min():.4g}: "
                "L = E + A/N^alpha + B/D^beta > E for every run"
            )
        e = math.log(fix_e)
        ps = [
            dataclasses.replace(p, lo=e, hi=e, init=e) if p.name == "e" else p for p in LAW_PARAMS
        ]
        law = dataclasses.replace(LAW, params=tuple(ps))
    x = (np.log(t.n), np.log(t.d))
    k = 6.0 if compute == "6ND" else t.flops_per_nd
    grid = besiroglu_grid()
    if fix_e is not None:
        grid = np.unique(np.column_stack([grid[:, :2], np.full(len(grid), e), grid[:, 3:]]), axis=0)
    w = np.ones_like(t.loss)
    first = grid_objective(grid, *x, np.log(t.loss), w, delta)
    best = [grid[i] for i in np.argsort(first)[:n_starts]]
    theta, fun, finfo = minimise(law, x, t.loss, best, delta=delta, max_starts=n_starts)

    samples, failed = [], 0
    if n_boot > 0:
        labels, inverse = np.unique(t.groups, return_inverse=True)
        rng = np.random.default_rng(seed)
        with single_blas_thread():
            for _ in range(n_boot):
                counts = np.bincount(
                    rng.integers(0, labels.size, labels.size), minlength=labels.size
                )
                try:
                    th, _, _ = minimise(
                        law, x, t.loss, [theta], weights=counts[inverse].astype(float),
                        delta=delta, max_starts=1,
                    )  # fmt: skip
                except (RuntimeError, ValueError):
                    failed += 1
                    continue
                samples.append(tuple(float(v) for v in th))
    params = reported(theta)
    intervals: dict[str, tuple[float, float]] = {}
    if samples:
        rep = [reported(np.array(s)) for s in samples]
        for name in params:
            v = np.array([r[name] for r in rep])
            with np.errstate(invalid="ignore"):  # G is inf for a sample with beta = 0
                lo, hi = np.nanpercentile(v, [2.5, 97.5])
            intervals[name] = (float(lo), float(hi))

    yhat, jac = LAW.jacobian(theta, x)
    diags = surface_checks(theta, params, intervals, n_boot, failed, x, yhat)
    if fix_e is not None:  # E is held, not at a bound of the data's making
        diags = [d for d in diags if not (d.code == "PARAM_AT_BOUND" and d.subject == "e")]
        intervals["E"] = (fix_e, fix_e)
    diags += floor_checks(params["E"], intervals.get("E"), e_floor, float(t.loss.min()), fix_e)
    # the shared core's conditioning check (scalelaws.core.checks; a new law gets it from fitting.fit)
    free = [0, 1, 3, 4] if fix_e is not None else [0, 1, 2, 3, 4]  # a held E is no parameter
    local, cond = checks.local_identifiability(
        [LAW.names[i] for i in free],
        (jac / yhat[:, None])[:, free],
        np.log(yhat) - np.log(t.loss),
        None,
        [False] * len(free),
        theta[free],
    )
    diags += [d for d in local if d.code == "ILL_CONDITIONED"]
    info = {
        "method": "approach 3: L(N,D) = E + A/N^alpha + B/D^beta; "
        "log L̂ = LSE(a - alpha log N, b - beta log D, e), Huber on log loss, L-BFGS-B",
        "reference": LAW.reference,
        "delta": delta,
        "fix_e": fix_e,
        "e_floor": e_floor,
        "starts": f"Besiroglu grid ({len(grid)} points) evaluated, L-BFGS-B from the best {n_starts}",
        "interval_method": "95% percentile bootstrap over "
        + (f"groups of {group_col!r}" if group_col else "runs")
        + ", each resample refitted from the full-data optimum",
        "n_boot": n_boot,
        "boot_failed": failed,
        "condition_number": cond["condition_number"],
        "seed": seed,
        "flops_per_nd": k,
        "optimum": f"closed form for C = k·N·D with k = {k:.4g}: N* = G·(C/k)^(beta/(alpha+beta)),"
        " D* = (C/k)/N*, G = (alpha·A/(beta·B))^(1/(alpha+beta))",
        "flops_range": [float(t.flops.min()), float(t.flops.max())],
        "n_range": [float(t.n.min()), float(t.n.max())],
        "d_range": [float(t.d.min()), float(t.d.max())],
        **finfo,
        **t.info,
    }
    return ChinchillaFit(
        params=params,
        intervals=intervals,
        metrics=metrics(t.loss, yhat) | {"objective": float(fun), "n_points": int(t.loss.size)},
        diagnostics=tuple(diags),
        info=info,
        samples=tuple(samples),
        log_residuals=tuple((np.log(t.loss) - np.log(yhat)).tolist()),
    )
