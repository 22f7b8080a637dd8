"""Shared fitting core for every law: robust multi-start bounded fits, bootstrap CIs, FitResult.

A law is a pure function with named, bounded parameters (`Law`). Fitting minimises

    mean_i w_i · Huber_δ(log ŷ_i − log y_i) / δ        (δ = 1e-3, docs/laws.md §7)

with scipy L-BFGS-B from several starts (the best one wins). Positive parameters are
optimised as log θ, so B ≈ 500 and β ≈ 0.5 are on the same scale. Gradients come from the
law's Jacobian (analytic), or from vectorised central differences when it has none.
Bootstrap intervals resample groups (curves or runs) with replacement; a resample is fitted by
weighting each point with how often its group was drawn; a law that can restrict its x to some
points (`Law.subset`) drops the points of groups not drawn, which changes no term.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalelaws.core import checks
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result

DELTA = 1e-3  # Huber threshold in log space (docs/laws.md §7)


@dataclass(frozen=True)
class Param:
    """One named parameter: bounds [lo, hi] and a default initial guess."""

    name: str
    lo: float
    hi: float
    init: float
    log: bool | None = None  # optimise log(θ); default: True when lo > 0

    @property
    def uses_log(self) -> bool:
        return self.lo > 0 if self.log is None else self.log


@dataclass(frozen=True)
class Law:
    """A law ŷ = predict(θ, x). θ is a vector in the order of `params`.

    jacobian(θ, x) -> (ŷ, J) with J[i, j] = ∂ŷ_i/∂θ_j (optional; else finite differences).
    guesses(x, y) -> list of θ vectors to start from (optional; else the params' `init`).
    report(θ, x) -> {name: value}: the parameters as reported, when the law is fitted in other
    coordinates (optional; else θ by name). Intervals are taken over reported values.
    """

    name: str
    params: tuple[Param, ...]
    predict: Callable[[np.ndarray, Any], np.ndarray]
    jacobian: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]] | None = None
    guesses: Callable[[Any, np.ndarray], list[np.ndarray]] | None = None
    reference: str = ""
    report: Callable[[np.ndarray, Any], dict[str, float]] | None = None
    subset: Callable[[Any, np.ndarray], Any] | None = None  # x at some points only (a bool each)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def reported(self, theta: Sequence[float], x: Any) -> dict[str, float]:
        return self.report(np.asarray(theta), x) if self.report else self.as_dict(theta)

    def vector(self, params: Mapping[str, float]) -> np.ndarray:
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(
                f"params for law {self.name!r} lack {missing}; give all of {self.names}"
            )
        return np.array([float(params[n]) for n in self.names])

    def as_dict(self, theta: Sequence[float]) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, theta, strict=True)}


@dataclass(frozen=True)
class FitResult(Result):
    """A fitted law: parameters, 95% intervals, per-point residuals y − ŷ, metrics, input hash.

    `info` holds the method (starts, objective, bootstrap counts; `bootstrap_params`: the
    reported parameters of every bootstrap refit), `diagnostics` what a reader should know.
    """

    law: str
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    residuals: list[float] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    input_hash: str = ""
    curves: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if "law" not in d or "params" not in d:
            raise ValueError("not a FitResult JSON (needs 'law' and 'params')")
        return super().from_dict(d)

    @classmethod
    def load(cls, path):
        try:
            return super().load(path)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def input_hash(*parts: Any) -> str:
    """sha256 over arrays (dtype, shape, bytes) and strings; stable across runs."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            h.update(p.encode())
        else:
            a = np.ascontiguousarray(np.asarray(p, dtype=float))
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    """R², MAE, RMSE, PredE = mean(|y−ŷ|/y), WorstE = max(|y−ŷ|/y) (docs/laws.md §1)."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    r = y - yhat
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    rel = np.abs(r) / np.abs(y)
    return {
        "r2": 1.0 - float(np.sum(r**2)) / ss_tot if ss_tot > 0 else float("nan"),
        "mae": float(np.mean(np.abs(r))),
        "rmse": float(np.sqrt(np.mean(r**2))),
        "pred_e": float(np.mean(rel)),
        "worst_e": float(np.max(rel)),
    }


# --------------------------------------------------------------------------- BLAS threads


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run BLAS on one thread inside the block.

    L-BFGS-B makes many tiny BLAS calls; with OpenBLAS threads on a busy 2-core machine each
    iteration costs ~10 ms instead of ~0.2 ms.
    """
    import scipy.optimize  # noqa: F401  (loads scipy's BLAS so threadpoolctl sees it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------- objective


def _to_u(law: Law, theta: np.ndarray) -> np.ndarray:
    return np.array(
        [np.log(t) if p.uses_log else t for p, t in zip(law.params, theta, strict=True)]
    )


def _to_theta(law: Law, u: np.ndarray) -> np.ndarray:
    return np.array([np.exp(v) if p.uses_log else v for p, v in zip(law.params, u, strict=True)])


def _u_bounds(law: Law) -> list[tuple[float, float]]:
    return [(np.log(p.lo), np.log(p.hi)) if p.uses_log else (p.lo, p.hi) for p in law.params]


def _fd_jacobian(law: Law, theta: np.ndarray, x: Any) -> tuple[np.ndarray, np.ndarray]:
    yhat = law.predict(theta, x)
    jac = np.empty((yhat.size, theta.size))
    for j in range(theta.size):
        h = 1e-6 * max(abs(theta[j]), 1e-8)
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        jac[:, j] = (law.predict(tp, x) - law.predict(tm, x)) / (2 * h)
    return yhat, jac


def objective(law: Law, x: Any, y: np.ndarray, w: np.ndarray, delta: float = DELTA):
    """Return f(u) -> (value, grad) for L-BFGS-B over the transformed parameters u."""
    logy = np.log(y)
    wsum = float(w.sum())
    jac_fn = law.jacobian or (lambda th, xx: _fd_jacobian(law, th, xx))
    is_log = np.array([p.uses_log for p in law.params])

    def f(u: np.ndarray) -> tuple[float, np.ndarray]:
        theta = _to_theta(law, u)
        yhat, jac = jac_fn(theta, x)
        if not np.all(np.isfinite(yhat)) or np.any(yhat <= 0):
            return 1e10, np.zeros_like(u)  # outside the law's domain: line search backs off
        r = np.log(yhat) - logy
        a = np.abs(r)
        hub = np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))
        psi = np.clip(r, -delta, delta)  # dHuber/dr
        value = float(np.sum(w * hub)) / (wsum * delta)
        g_theta = (w * psi / yhat) @ jac / (wsum * delta)
        g = np.where(is_log, g_theta * theta, g_theta)  # dθ/du = θ for log parameters
        return value, g

    return f


# --------------------------------------------------------------------------- fit


def _check_inputs(law: Law, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (got shape {y.shape})")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("y must be finite and > 0: the fit is in log space; drop bad rows first")
    w = np.ones_like(y) if weights is None else np.asarray(weights, float)
    if w.shape != y.shape or np.any(w < 0):
        raise ValueError("weights must be non-negative with the shape of y")
    n_eff = int(np.count_nonzero(w))
    if n_eff < len(law.params):
        raise ValueError(
            f"law {law.name!r} has {len(law.params)} parameters but only {n_eff} points: "
            "give at least as many points as parameters"
        )
    return w


def minimise(
    law: Law,
    x: Any,
    y: np.ndarray,
    starts: Sequence[np.ndarray],
    *,
    weights: np.ndarray | None = None,
    delta: float = DELTA,
    max_starts: int = 8,
    maxiter: int = 3000,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Multi-start L-BFGS-B. Returns (θ, objective, info); RuntimeError when no start converges."""
    y = np.asarray(y, float)
    w = _check_inputs(law, y, weights)
    f = objective(law, x, y, w, delta)
    bounds = _u_bounds(law)
    lo, hi = np.array(bounds).T
    us = [np.clip(_to_u(law, np.asarray(s, float)), lo, hi) for s in starts]
    first = np.array([f(u)[0] for u in us])
    order = np.argsort(first)[:max_starts]
    with single_blas_thread():
        runs = [_run_start(f, us[i], int(i), bounds, lo, hi, maxiter) for i in order]
    good = [r for r in runs if r["ok"] and np.isfinite(r["fun"])]
    if not good:
        msgs = "; ".join(sorted({r["message"] for r in runs}))
        raise RuntimeError(f"fit of law {law.name!r} did not converge from any start ({msgs})")
    best = min(good, key=lambda r: r["fun"])
    theta = _to_theta(law, best["u"])
    info = {
        "objective": best["fun"],
        "starts_tried": len(runs),
        "starts_converged": len(good),
        "iterations": best["nit"],
    }
    return theta, best["fun"], info


def _run_start(f, u0, i, bounds, lo, hi, maxiter) -> dict:
    from scipy.optimize import minimize

    res = minimize(
        f,
        u0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-13, "gtol": 1e-10},
    )
    # L-BFGS-B stops with ABNORMAL_TERMINATION when the line search cannot improve at
    # machine precision; that is converged if the projected gradient is small.
    pg = _projected_grad(res.x, res.jac, lo, hi)
    ok = (bool(res.success) or (res.status == 2 and pg < 1e-5)) and res.fun < 1e9
    return {
        "start": i,
        "fun": float(res.fun),
        "ok": ok,
        "nit": int(res.nit),
        "message": str(res.message),
        "u": res.x,
    }


def _projected_grad(u: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    pg = np.where((u <= lo) & (g > 0), 0.0, g)
    pg = np.where((u >= hi) & (pg < 0), 0.0, pg)
    return float(np.max(np.abs(pg))) if pg.size else 0.0


def default_starts(law: Law, x: Any, y: np.ndarray) -> list[np.ndarray]:
    if law.guesses is not None:
        return [np.asarray(s, float) for s in law.guesses(x, y)]
    return [np.array([p.init for p in law.params])]


def fit(
    law: Law,
    x: Any,
    y: np.ndarray,
    *,
    starts: Sequence[np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    delta: float = DELTA,
    max_starts: int = 8,
    groups: np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
    hash_parts: Sequence[Any] | None = None,
    noise: float | None = None,
    labels: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Fit `law` to (x, y); with `groups` and n_boot > 0 also 95% bootstrap intervals.

    Every result carries the generic diagnostics of scalelaws.core.checks (fit_diagnostics); `noise`
    (the data's own scale in log y, e.g. checks.curve_noise) with `groups` adds MISFIT;
    `labels` names the groups (sorted group ids -> names) in its message."""
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: the number of bootstrap resamples must be >= 0")
    y = np.asarray(y, float)
    if n_boot > 0 and groups is None:
        raise ValueError("bootstrap needs groups (one label per point: curve or run)")
    starts = default_starts(law, x, y) if starts is None else list(starts)
    theta, fun, info = minimise(
        law, x, y, starts, weights=weights, delta=delta, max_starts=max_starts
    )
    yhat = law.predict(theta, x)
    intervals: dict[str, tuple[float, float]] = {}
    if n_boot > 0:
        kw = dict(n_boot=n_boot, seed=seed, delta=delta, weights=weights, progress=progress)
        intervals, binfo = bootstrap(law, x, y, groups, theta, **kw)
        info.update(binfo)
    parts = hash_parts if hash_parts is not None else ([x] if isinstance(x, np.ndarray) else [])
    params = law.reported(theta, x)
    diags, extra = fit_diagnostics(
        law, x, y, theta, weights, params, intervals, info, groups, noise, labels
    )
    info.update(extra)
    return FitResult(
        law=law.name,
        params=params,
        intervals=intervals,
        residuals=(y - yhat).tolist(),
        metrics=metrics(y, yhat),
        input_hash=input_hash(law.name, y, *parts),
        info=info,
        diagnostics=diags,
    )


def fit_diagnostics(
    law: Law,
    x: Any,
    y: np.ndarray,
    theta: np.ndarray,
    weights: np.ndarray | None,
    params: Mapping[str, float],
    intervals: Mapping[str, tuple[float, float]],
    info: Mapping,
    groups: np.ndarray | None = None,
    noise: float | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[tuple[Diagnostic, ...], dict[str, Any]]:
    """The generic checks of scalelaws.core.checks on a fitted law: parameters at a bound,
    conditioning and local identifiability, wide bootstrap intervals, too few resamples or
    groups, misfit beyond `noise` (per group), failed refits. Returns (diagnostics, info)."""
    yhat, jac = (law.jacobian or (lambda th, xx: _fd_jacobian(law, th, xx)))(theta, x)
    is_log = np.array([p.uses_log for p in law.params])
    jac_u = np.where(is_log, jac * theta, jac) / yhat[:, None]
    resid = np.log(yhat) - np.log(y)
    diags = checks.bounds(law.params, theta)
    local, extra = checks.local_identifiability(law.names, jac_u, resid, weights, is_log, theta)
    diags += local
    n_boot = int(info.get("n_boot", 0))
    n_groups = int(info.get("boot_groups", 0))
    diags += checks.wide_intervals(params, intervals, n_boot, n_groups)
    diags += checks.resamples(n_boot, n_groups)
    if noise is not None and groups is not None:
        mis, mis_info = checks.misfit(resid, groups, noise, labels)
        diags += mis
        extra |= mis_info
    return diags + bootstrap_diagnostics(info), extra


def _refit(law: Law, x: Any, y: np.ndarray, w: np.ndarray, theta, delta: float) -> np.ndarray:
    """One resample's fit from θ. Points of groups not drawn weigh 0; a law that can restrict
    its x (`subset`) leaves them out, which changes no term of the objective."""
    if law.subset is not None and not np.all(w > 0):
        keep = w > 0
        x, y, w = law.subset(x, keep), y[keep], w[keep]
    th, _, _ = minimise(law, x, y, [theta], weights=w, delta=delta, max_starts=1)
    return th


def bootstrap_diagnostics(info: Mapping) -> tuple[Diagnostic, ...]:
    """BOOTSTRAP_FAILED when some bootstrap refits failed."""
    failed, n = info.get("boot_failed", 0), info.get("n_boot", 0)
    if not failed:
        return ()
    msg = f"{failed} of {n} bootstrap refits failed; intervals use the {n - failed} others"
    return (Diagnostic("BOOTSTRAP_FAILED", "warning", msg, "raise n_boot or add curves"),)


def bootstrap(
    law: Law,
    x: Any,
    y: np.ndarray,
    groups: np.ndarray,
    theta: np.ndarray,
    *,
    n_boot: int = 100,
    seed: int = 0,
    level: float = 0.95,
    delta: float = DELTA,
    weights: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Percentile intervals from refits on group resamples (drawn with replacement).

    A resample weights each point by (its base weight) × (times its group was drawn) and is
    fitted from θ (the full-data fit). Resamples whose fit fails are skipped and counted;
    RuntimeError if none succeeds. Returns ({name: (lo, hi)}, info with the refits' parameters
    and, aligned with them, how often each group was drawn: `bootstrap_counts`, groups in
    sorted order; a group drawn 0 times is out of bag for that refit).
    progress(done, n_boot) is called after each resample (scalelaws.core.progress).
    """
    y = np.asarray(y, float)
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise ValueError("groups must give one label per point (same shape as y)")
    labels, inverse = np.unique(groups, return_inverse=True)
    base = np.ones_like(y) if weights is None else np.asarray(weights, float)
    rng = np.random.default_rng(seed)
    samples, drawn, failed = [], [], 0
    done: dict[bytes, np.ndarray | None] = {}  # a resample drawn before: the same refit
    for i in range(n_boot):
        counts = np.bincount(rng.integers(0, labels.size, labels.size), minlength=labels.size)
        key = counts.tobytes()  # with few groups most draws repeat (3 curves: 10 distinct)
        if key not in done:
            try:
                done[key] = _refit(law, x, y, base * counts[inverse], theta, delta)
            except (RuntimeError, ValueError):
                done[key] = None
        if done[key] is None:
            failed += 1
        else:
            samples.append(done[key])
            drawn.append(counts.tolist())
        if progress is not None:
            progress(i + 1, n_boot)
    if not samples:
        raise RuntimeError(f"bootstrap of law {law.name!r}: all {n_boot} resamples failed")
    rep = [law.reported(th, x) for th in samples]
    names = list(rep[0])
    s = np.array([[r[n] for n in names] for r in rep])
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(s, q, axis=0), np.percentile(s, 100 - q, axis=0)
    intervals = {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi, strict=True)}
    return intervals, {
        "n_boot": n_boot,
        "boot_failed": failed,
        "boot_groups": int(labels.size),
        "level": level,
        "bootstrap_params": rep,  # one reported-parameter dict per successful refit
        # per successful refit: how often each group (sorted labels) was drawn; 0: out of bag
        "bootstrap_counts": drawn,
    }
