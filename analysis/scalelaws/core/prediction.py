"""Prediction intervals: a law's prediction with a stated level (docs/laws.md §7, "Prediction
intervals").

A prediction interval must cover what is later measured, so it carries two kinds of
uncertainty:

- parameter uncertainty: the law evaluated at every bootstrap refit's parameters (or, for an
  OLS law, the t-distribution of the fitted line);
- residual scatter: a residual of the fit drawn at random and added to each of those
  predictions, on the scale the law is fitted on (log y for the log-space fits).

`predictive_interval` mixes the two by Monte Carlo and takes quantiles; `ols_interval` is the
closed form of the same for a line fitted by OLS (t-quantile of σ̂·√(1 + h), h the leverage).
Small samples understate scatter: residuals are inflated by √(n / (n − p)) (the usual
degrees-of-freedom correction), nothing else is tuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result

N_MONTE_CARLO = 4000  # samples behind each predictive quantile


@dataclass(frozen=True)
class Prediction(Result):
    """Point predictions with `level` prediction intervals [lo, hi], one per input in `x`.

    info: how the interval was made (method, draws, residual pool size, log_space).
    """

    x: list
    point: list[float]
    lo: list[float]
    hi: list[float]
    level: float = 0.9
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("x", "point", "lo", "hi"):  # arrays in, JSON-ready lists kept
            object.__setattr__(self, name, np.asarray(getattr(self, name)).tolist())

    def covers(self, measured) -> np.ndarray:
        """Per point: lo <= measured <= hi."""
        m = np.asarray(measured, float)
        return (np.asarray(self.lo) <= m) & (m <= np.asarray(self.hi))

    @property
    def width(self) -> np.ndarray:
        return np.asarray(self.hi) - np.asarray(self.lo)


def residuals_only(fix: str) -> Diagnostic:
    """NO_INTERVAL for a prediction whose fit kept no bootstrap draws (`fix`: how to refit)."""
    return Diagnostic(
        "NO_INTERVAL",
        "warning",
        "the fit has no bootstrap refits: the interval holds residual scatter only, no "
        "parameter uncertainty",
        fix,
    )


def check_level(level: float) -> float:
    if not (isinstance(level, int | float) and 0 < level < 1):
        raise ValueError(f"level={level}: must lie strictly between 0 and 1 (e.g. 0.9)")
    return float(level)


def dof_inflation(n: int, p: int) -> float:
    """√(n / (n − p)): in-sample residuals of a p-parameter fit on n points are that much
    smaller than fresh scatter (for least squares); 1 when n <= p cannot say (then no inflation
    is honest either; the caller reports too few points)."""
    return float(np.sqrt(n / (n - p))) if n > p else 1.0


def predictive_interval(
    point: np.ndarray,
    draws: np.ndarray | None,
    residuals: np.ndarray,
    *,
    level: float = 0.9,
    log: bool = True,
    n_params: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, lo, hi) from parameter draws plus resampled residuals.

    point: (m,) prediction at the fitted parameters. draws: (k, m) predictions at k bootstrap
    parameter sets (None: residual scatter only). residuals: the fit's residuals, on the scale
    it is fitted on (log y − log ŷ when `log`, else y − ŷ), inflated by dof_inflation(n,
    n_params). Each Monte Carlo sample picks one draw and one residual per point; the interval
    is the sample's central `level` quantiles (back-transformed when `log`).
    """
    level = check_level(level)
    point = np.asarray(point, float)
    res = np.asarray(residuals, float).ravel()
    res = res[np.isfinite(res)]
    if res.size == 0:
        raise ValueError("prediction interval: the fit has no finite residuals")
    res = res * dof_inflation(res.size, n_params)
    rng = np.random.default_rng(seed)
    center = np.log(point) if log else point
    if draws is None or len(draws) == 0:
        base = np.broadcast_to(center, (N_MONTE_CARLO, point.size))
    else:
        d = np.asarray(draws, float)
        d = np.log(d) if log else d
        d = d[np.all(np.isfinite(d), axis=1)]
        if d.shape[0] == 0:
            raise ValueError("prediction interval: no bootstrap draw gives a finite prediction")
        base = d[rng.integers(0, d.shape[0], N_MONTE_CARLO)]
    samples = base + rng.choice(res, size=(N_MONTE_CARLO, point.size))
    q = (1 - level) / 2
    lo, hi = np.quantile(samples, [q, 1 - q], axis=0)
    if log:
        lo, hi = np.exp(lo), np.exp(hi)
    return point, lo, hi


def ols_interval(
    x: np.ndarray, y: np.ndarray, x_new: np.ndarray, *, level: float = 0.9, intercept=True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """OLS of y on the columns of x (plus an intercept), and its `level` prediction interval
    for a new observation at each row of x_new (statsmodels' obs interval:
    ŷ ± t_{n−p}·σ̂·√(1 + x₀ᵀ(XᵀX)⁻¹x₀)). Returns (ŷ, lo, hi, info). Needs n > p points."""
    import statsmodels.api as sm

    level = check_level(level)
    x = np.asarray(x, float).reshape(len(y), -1)
    x_new = np.asarray(x_new, float).reshape(-1, x.shape[1])
    y = np.asarray(y, float)
    if intercept:
        x = sm.add_constant(x, has_constant="add")
        x_new = sm.add_constant(x_new, has_constant="add")
    n, p = x.shape
    if n <= p:
        raise ValueError(f"prediction interval: {n} points for {p} coefficients; need more points")
    res = sm.OLS(y, x).fit()
    frame = res.get_prediction(x_new).summary_frame(alpha=1 - level)
    info = {"method": "ols t-interval", "n": n, "dof": n - p, "sigma": float(np.sqrt(res.scale))}
    lo, hi = frame["obs_ci_lower"].to_numpy(), frame["obs_ci_upper"].to_numpy()
    return frame["mean"].to_numpy(), lo, hi, info
