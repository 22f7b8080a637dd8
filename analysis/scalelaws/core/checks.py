"""Generic checks that every fit gets from the shared core (docs/laws.md §7 "Diagnostics").

Each check returns Diagnostics (codes in scalelaws.core.diagnostics.CODES) and never changes a
number. The thresholds are module constants, chosen so that the published clean fits (the
Luo et al. 2025 MPL curves, the Zhang et al. 2025 CBS table) stay quiet:

- PARAM_AT_BOUND: within NEAR (1%) of the search range from a bound (in log θ for log
  parameters), the way Besiroglu et al. 2024 (arXiv 2404.10102) read Hoffmann et al.'s fits.
- ILL_CONDITIONED: the Gauss–Newton matrix M = Jᵀ W J of the log residuals at the optimum, in
  the optimiser's coordinates (log θ where positive), columns scaled to unit diagonal:
  cond(M) > COND_MAX is near-singular (a warning). Parameters whose local 95% interval
  (1.96·σ̂·sqrt((M⁻¹)_jj), σ̂ the residual scale) spans more than a factor 2 (or more than
  their value, for a linear parameter) are listed in one NON_IDENTIFIABLE *info* line: the
  data barely move the predictions along them (the published 3-curve MPL fit leaves C, β, γ
  so), which matters for predictions on new schedules, not on schedules like the fitted ones.
- NON_IDENTIFIABLE (bootstrap): a 95% interval wider than |estimate|, read only with at least
  MIN_GROUPS groups and MIN_RESAMPLES resamples (with fewer, the percentile interval mostly
  shows resamples that drop whole kinds of run: FEW_GROUPS / FEW_RESAMPLES instead).
- MISFIT: the worst group's RMS log residual exceeds MISFIT_RATIO × the data's own noise (a
  robust scale of the second differences of log y within each group) and MISFIT_FLOOR (0.5%:
  smoothed logs understate their noise, and a law good to 0.5% is not called a misfit).
- TOO_FEW_POINTS: a scaling fit on fewer than MIN_SCALING_POINTS points.
- EXTRAPOLATION: a prediction beyond the fitted range, with its distance (factor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scalelaws.core.diagnostics import Diagnostic

NEAR = 0.01
COND_MAX = 1e8
LOCAL_FACTOR = 2.0
MISFIT_RATIO = 3.0
MISFIT_FLOOR = 0.005
MIN_RESAMPLES = 20
MIN_GROUPS = 5
MIN_SCALING_POINTS = 4


def bounds(params: Sequence[Any], theta: Sequence[float], names=None) -> tuple[Diagnostic, ...]:
    """PARAM_AT_BOUND for each value on or near (NEAR of the range) a bound of its box.

    `params`: objects with name, lo, hi, uses_log (scalelaws.core.fitting.Param)."""
    out = []
    for p, v, name in zip(params, theta, names or [p.name for p in params], strict=True):
        log = p.uses_log and v > 0
        lo, hi, x = (np.log(p.lo), np.log(p.hi), np.log(v)) if log else (p.lo, p.hi, v)
        frac = (x - lo) / (hi - lo) if hi > lo else 0.5
        if NEAR < frac < 1 - NEAR:
            continue
        side, edge = ("lower", p.lo) if frac <= NEAR else ("upper", p.hi)
        at = abs(v - edge) <= 1e-3 * max(abs(edge), 1e-12)
        where = "sits at" if at else "is near"
        out.append(
            Diagnostic(
                "PARAM_AT_BOUND",
                "warning",
                f"{name} = {v:.4g} {where} its {side} bound {edge:g}: not identified",
                "fit on longer or more varied schedules, or read this parameter as a bound",
                name,
            )
        )
    return tuple(out)


def local_identifiability(
    names: Sequence[str],
    jac_u: np.ndarray,
    resid: np.ndarray,
    weights: np.ndarray | None = None,
    is_log: Sequence[bool] | None = None,
    values: Sequence[float] | None = None,
) -> tuple[tuple[Diagnostic, ...], dict[str, float]]:
    """ILL_CONDITIONED and local NON_IDENTIFIABLE from the Jacobian of the log residuals.

    jac_u[i, j] = ∂ log ŷ_i / ∂ u_j (u = log θ_j where is_log[j]); resid = log ŷ − log y.
    Returns (diagnostics, info: condition number and the local 95% half-width per parameter).
    """
    n, k = jac_u.shape
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    m = (jac_u * w[:, None]).T @ jac_u
    d = np.sqrt(np.clip(np.diag(m), 1e-300, None))
    scaled = m / np.outer(d, d)
    cond = float(np.linalg.cond(scaled))
    dof = max(int(np.count_nonzero(w)) - k, 1)
    sigma2 = float(np.sum(w * resid**2)) * np.count_nonzero(w) / dof
    info: dict[str, float] = {"condition_number": cond}
    out = []
    if not np.isfinite(cond) or cond > COND_MAX:
        weakest = names[int(np.argmax(np.abs(np.linalg.eigh(scaled)[1][:, 0])))]
        out.append(
            Diagnostic(
                "ILL_CONDITIONED",
                "warning",
                f"condition number of the scaled JᵀWJ is {cond:.3g} (> {COND_MAX:.0e}): "
                f"the parameters trade off, most of all {weakest}",
                "read the predictions, not the parameters; add runs that vary the schedule",
                weakest,
            )
        )
    try:
        cov_diag = np.diag(np.linalg.pinv(scaled)) / d**2 * sigma2
    except np.linalg.LinAlgError:
        return tuple(out), info
    half = 1.96 * np.sqrt(np.clip(cov_diag, 0, None))
    is_log = [True] * k if is_log is None else list(is_log)
    loose = []
    for j, name in enumerate(names):
        info[f"local_half_width[{name}]"] = float(half[j])
        if is_log[j] and half[j] > np.log(LOCAL_FACTOR):
            factor = np.exp(min(2 * half[j], 700))
            loose.append((name, f"a factor {factor:.2g}" if factor < 1e6 else "> a factor 1e6"))
        elif not is_log[j] and values is not None and 2 * half[j] > abs(values[j]):
            loose.append((name, f"±{half[j]:.2g}"))
    if loose:
        out.append(
            Diagnostic(
                "NON_IDENTIFIABLE",
                "info",
                "local 95% intervals (from JᵀWJ and the residual scale) span "
                + ", ".join(f"{span} for {n}" for n, span in loose)
                + ": the data barely constrain them",
                "read them as unconstrained; predictions on schedules like these stay valid",
                ", ".join(n for n, _ in loose),
            )
        )
    return tuple(out), info


def wide_intervals(
    params: Mapping[str, float],
    intervals: Mapping[str, tuple[float, float]],
    n_boot: int,
    n_groups: int,
) -> tuple[Diagnostic, ...]:
    """NON_IDENTIFIABLE for each bootstrap interval wider than |estimate| (enough groups only)."""
    if n_boot < MIN_RESAMPLES or n_groups < MIN_GROUPS:
        return ()
    out = []
    for name, (lo, hi) in intervals.items():
        v = params.get(name)
        if v is None or not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= abs(v):
            continue
        out.append(
            Diagnostic(
                "NON_IDENTIFIABLE",
                "warning",
                f"{name} = {v:.4g} but its 95% interval ({lo:.4g}, {hi:.4g}) is wider than it",
                "do not read or extrapolate it; add runs that vary what it describes",
                name,
            )
        )
    return tuple(out)


def resamples(n_boot: int, n_groups: int, what: str = "curves") -> tuple[Diagnostic, ...]:
    """FEW_RESAMPLES (1..19 resamples: no 95% interval) and FEW_GROUPS (< 5 groups)."""
    out = []
    if 0 < n_boot < MIN_RESAMPLES:
        out.append(
            Diagnostic(
                "FEW_RESAMPLES",
                "warning",
                f"only {n_boot} bootstrap resamples: a 95% interval needs >= {MIN_RESAMPLES}, so "
                "the intervals are unavailable (the stored ranges are the refits' spread)",
                f"refit with --bootstrap >= {MIN_RESAMPLES}",
            )
        )
    if n_boot > 0 and 0 < n_groups < MIN_GROUPS:
        out.append(
            Diagnostic(
                "FEW_GROUPS",
                "info",
                f"the bootstrap resamples {n_groups} {what}: its intervals are coarse (resamples "
                f"that drop whole {what} can span the search box)",
                f"add {what} before reading the intervals",
            )
        )
    return tuple(out)


def curve_noise(y: np.ndarray, groups: np.ndarray) -> float:
    """The data's own noise in log y: median over groups of the robust scale of the second
    differences of log y within the group, divided by sqrt(6) (Var(Δ²ε) = 6σ² for white noise).
    NaN when no group has 3 points."""
    logy, groups = np.log(np.asarray(y, float)), np.asarray(groups)
    scales = []
    for g in np.unique(groups):
        d2 = np.diff(logy[groups == g], 2)
        if d2.size >= 1:
            scales.append(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6))
    return float(np.median(scales)) if scales else float("nan")


def misfit(
    resid: np.ndarray, groups: np.ndarray, noise: float, labels: Sequence[str] | None = None
) -> tuple[tuple[Diagnostic, ...], dict[str, float]]:
    """MISFIT when the worst group's RMS log residual is > MISFIT_RATIO·noise and > MISFIT_FLOOR."""
    resid, groups = np.asarray(resid, float), np.asarray(groups)
    ids = np.unique(groups)
    rms = np.array([np.sqrt(np.mean(resid[groups == g] ** 2)) for g in ids])
    worst = int(np.argmax(rms))
    info = {"noise_log": noise, "rms_log_worst": float(rms[worst])}
    limit = max(MISFIT_RATIO * (noise if np.isfinite(noise) else 0.0), MISFIT_FLOOR)
    if rms[worst] <= limit:
        return (), info
    name = labels[worst] if labels is not None else str(ids[worst])
    bad = int(np.sum(rms > limit))
    msg = (
        f"RMS log residual {rms[worst]:.3g} on {name} ({bad} of {ids.size} groups above "
        f"{limit:.3g}) vs noise {noise:.2g} within the curves"
    )
    action = "the law does not describe these runs: check the input, or fit runs of one kind"
    return (Diagnostic("MISFIT", "warning", msg, action, name),), info


def too_few(n: int, what: str, force: bool, minimum: int = MIN_SCALING_POINTS) -> Diagnostic:
    """TOO_FEW_POINTS for a fit on `n` < minimum points; ValueError unless `force`."""
    msg = f"{what}: {n} points, fewer than the {minimum} a scaling fit needs"
    if not force:
        raise ValueError(f"{msg}; add runs, or pass force=True (--force) to fit anyway")
    return Diagnostic(
        "TOO_FEW_POINTS", "warning", msg + " (forced)", "add runs; do not read this fit", what
    )


def extrapolation(
    what: str, value: float, lo: float, hi: float, severity: str = "warning", action: str = ""
) -> tuple[Diagnostic, ...]:
    """EXTRAPOLATION when `value` lies outside [lo, hi], with the distance as a factor."""
    if not (np.isfinite(value) and np.isfinite(lo) and np.isfinite(hi)):
        return ()
    if lo <= value <= hi:
        return ()
    edge = hi if value > hi else lo
    factor = value / edge if value > hi else edge / value if value > 0 else float("inf")
    side = "above" if value > hi else "below"
    msg = f"{what} = {value:.4g} is {factor:.4g}x {side} the fitted range [{lo:.4g}, {hi:.4g}]"
    return (
        Diagnostic(
            "EXTRAPOLATION",
            severity,
            msg,
            action or "check the prediction with one run in that range",
            what,
        ),
    )
