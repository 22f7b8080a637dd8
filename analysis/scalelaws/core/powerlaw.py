"""Power laws fitted by OLS on logs, with 95% intervals from statsmodels (docs/laws.md §7:
a pure power law is fitted by OLS on log-log data).

    y = coef · (x/x_unit)^exponent                    fit_power_law
    y = coef · (N/n_unit)^a · (D/d_unit)^b            fit_joint_power_law (Zhang et al. 2025's
                                                      CBS(N, D) form, arXiv 2410.21676)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np


def tuples_from_json(v, inf: bool = False):
    """A value back from JSON: lists -> tuples; with `inf`, null (JSON's inf) -> math.inf."""
    if isinstance(v, list):
        return tuple(tuples_from_json(x, inf) for x in v)
    return math.inf if v is None and inf else v


@dataclass(frozen=True)
class PowerLaw:
    """y = coef · (x/x_unit)^exponent, OLS on log-log data; 95% intervals (statsmodels)."""

    coef: float
    exponent: float
    coef_interval: tuple[float, float]
    exponent_interval: tuple[float, float]
    x_unit: float
    r2: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PowerLaw:
        return cls(**{f.name: tuples_from_json(d[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class JointPowerLaw:
    """y = coef · (N/n_unit)^a · (D/d_unit)^b, OLS on logs; 95% intervals."""

    coef: float
    a: float
    b: float
    coef_interval: tuple[float, float]
    a_interval: tuple[float, float]
    b_interval: tuple[float, float]
    n_unit: float
    d_unit: float
    r2: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> JointPowerLaw:
        return cls(**{f.name: tuples_from_json(d[f.name]) for f in fields(cls)})


def scaling_law_from_dict(d: dict) -> PowerLaw | JointPowerLaw:
    """A PowerLaw or JointPowerLaw back from its to_dict()."""
    return (JointPowerLaw if "a" in d else PowerLaw).from_dict(d)


def _ols(x_cols: list[np.ndarray], y: np.ndarray):
    import statsmodels.api as sm  # only the scaling fits need it (slow to import)

    res = sm.OLS(np.log(y), sm.add_constant(np.column_stack(x_cols), has_constant="add")).fit()
    ci = res.conf_int(0.05)
    return res, [(float(lo), float(hi)) for lo, hi in ci]


def fit_power_law(x, y, x_unit: float = 1.0) -> PowerLaw:
    """log y = log c + e·log(x/x_unit) by OLS (e.g. Zhang et al.: CBS ≈ 93.2·N^0.468, N in M)."""
    x, y = np.asarray(x, float) / x_unit, np.asarray(y, float)
    if x.size < 3 or np.unique(x).size < 2:
        raise ValueError(f"a power-law fit needs >= 3 points and 2 distinct x, got {x.size}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError("power-law fit: x and y must be finite and > 0")
    res, ci = _ols([np.log(x)], y)
    return PowerLaw(
        coef=float(np.exp(res.params[0])),
        exponent=float(res.params[1]),
        coef_interval=(math.exp(ci[0][0]), math.exp(ci[0][1])),
        exponent_interval=ci[1],
        x_unit=x_unit,
        r2=float(res.rsquared),
        n=int(x.size),
    )


def fit_joint_power_law(n, d, y, n_unit: float = 1.0, d_unit: float = 1.0) -> JointPowerLaw:
    """log y = log c + a·log N + b·log D by OLS (Zhang et al.'s CBS(N, D) form)."""
    ln = np.log(np.asarray(n, float) / n_unit)
    ld = np.log(np.asarray(d, float) / d_unit)
    y = np.asarray(y, float)
    if y.size < 4:
        raise ValueError(f"the joint fit c·N^a·D^b needs >= 4 points, got {y.size}")
    if abs(np.corrcoef(ln, ld)[0, 1]) > 0.99:
        raise ValueError(
            "N and D vary together (|corr(log N, log D)| > 0.99); a joint fit "
            "cannot separate them: vary N at fixed D and D at fixed N"
        )
    res, ci = _ols([ln, ld], y)
    return JointPowerLaw(
        coef=float(np.exp(res.params[0])),
        a=float(res.params[1]),
        b=float(res.params[2]),
        coef_interval=(math.exp(ci[0][0]), math.exp(ci[0][1])),
        a_interval=ci[1],
        b_interval=ci[2],
        n_unit=n_unit,
        d_unit=d_unit,
        r2=float(res.rsquared),
        n=int(y.size),
    )


def cross_check(what: str, x: np.ndarray, logy: np.ndarray, *intervals, n_boot: int = 500):
    """ROBUST_DISAGREES when a Huber fit (statsmodels RLM) or a bootstrap over points (median
    of 500 OLS refits) moves a slope from OLS by more than half its OLS 95% half-width (about
    one standard error). x: (n, k) log regressors; intervals: the OLS t-intervals (symmetric
    about the OLS slope)."""
    import statsmodels.api as sm

    from scalelaws.core.diagnostics import Diagnostic

    design = sm.add_constant(x, has_constant="add")
    huber = sm.RLM(logy, design, M=sm.robust.norms.HuberT()).fit().params[1:]
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, logy.size, logy.size)
        if np.linalg.matrix_rank(design[i]) == design.shape[1]:
            boots.append(np.linalg.lstsq(design[i], logy[i], rcond=None)[0][1:])
    med = np.median(boots, axis=0) if boots else huber
    out = []
    for j, (lo, hi) in enumerate(intervals):
        ols, tol = (lo + hi) / 2, (hi - lo) / 4
        off = [f"{name} {v[j]:.3g}" for name, v in (("Huber", huber), ("bootstrap", med))]
        off = [o for o, v in zip(off, (huber[j], med[j]), strict=True) if abs(v - ols) > tol]
        if off:
            out.append(
                Diagnostic(
                    "ROBUST_DISAGREES",
                    "warning",
                    f"{what}: slope {j + 1}: {', '.join(off)} vs OLS {ols:.3g} (95% "
                    f"[{lo:.3g}, {hi:.3g}]): more than one standard error apart",
                    "one group drives the fit: look at the residuals before reading the slope",
                    what,
                )
            )
    return tuple(out)
