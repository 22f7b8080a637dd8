"""Approach 2, one isoFLOP slice at a time (docs/laws.md §4.2): the window around the slice's
lowest measured loss, whether that minimum is bracketed, a robust parabola in ln N on the
window, and bootstrap draws of ln N_opt from the slice's own runs.

A parabola is a good approximation of an isoFLOP curve only near its minimum: on the
Chinchilla law the curve in x = ln N is a sum of two exponentials, e^{−αx} and e^{βx}, so one
parabola over three decades of N puts its vertex far from the minimum. Hence the window, and
the refusal (by the caller) of a slice whose minimum is at its smallest or largest size.

Bootstrap: a fixed-design residual bootstrap over runs. Each draw keeps a window's sizes and
adds to its fitted parabola leverage-adjusted residuals r_i/√(1−h_ii), standardised, drawn
with replacement from the windows of all slices used and scaled by the slice's noise sd,
its own variance shrunk towards the pooled one (noise_scales): a 5-size window has 2
residual degrees of freedom, too few to estimate its noise alone (with each slice's own
residuals the 95% interval of the known-answer case, tests/test_isoflop_known_answer.py,
covered the true exponent 80% of the time), while one noisy slice must not pass its noise
to the others. Case
resampling (drawing the runs themselves) is not used: with 5 sizes a draw keeps fewer than 3
distinct sizes one time in ten and the parabola is then undefined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

HUBER_K = 1.345  # Huber's tuning constant (95% efficiency under Gaussian noise)
IRLS_STEPS = 25


@dataclass
class SliceFit:
    """One slice: its row for IsoFLOPFit.slices (or dropped), the design of its window, the
    fitted values and leverage-adjusted residuals (for the bootstrap)."""

    row: dict
    x: np.ndarray = field(repr=False)  # ln N − ln N_centre of the window's runs
    fitted: np.ndarray = field(repr=False)
    resid: np.ndarray = field(repr=False)  # leverage-adjusted, centred; empty without dof
    centre: float = 0.0  # ln N of the lowest measured loss
    used: bool = True
    reason: str = ""


def window(n: np.ndarray, loss: np.ndarray, window_dex: float | None, min_sizes: int):
    """(mask of the runs in the window, ln N of the lowest mean loss, bracketed): the distinct
    sizes within `window_dex` (log10) of the size with the lowest mean loss, at least the
    `min_sizes` nearest ones and its two neighbours; bracketed when that size is neither the
    smallest nor the largest of the slice. window_dex None: the whole slice."""
    sizes, inv = np.unique(n, return_inverse=True)
    means = np.bincount(inv, loss) / np.bincount(inv)
    j = int(np.argmin(means))
    bracketed = 0 < j < sizes.size - 1
    if window_dex is None:
        keep = np.ones(sizes.size, bool)
    else:
        dist = np.abs(np.log10(sizes) - np.log10(sizes[j]))
        keep = dist <= window_dex * (1 + 1e-9)
        keep[np.argsort(dist, kind="stable")[:min_sizes]] = True
        keep[max(j - 1, 0) : j + 2] = True
    return keep[inv], float(np.log(sizes[j])), bracketed


def parabolas(x: np.ndarray, y: np.ndarray, robust: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fit y = c0 + c1·x + c2·x² to each column of y (m,) or (m, B): (coef (3, B), final
    weights (m, B)). robust: Huber IRLS (k = 1.345) with the MAD scale of the residuals,
    inflated by √(m/(m−3)); with m = 3 the fit is exact and the weights are 1."""
    y2 = y.reshape(y.shape[0], -1)
    design = np.column_stack([np.ones_like(x), x, x * x])
    coef = np.linalg.lstsq(design, y2, rcond=None)[0]
    w = np.ones_like(y2)
    m = x.size
    if not robust or m <= 3:
        return coef, w
    for _ in range(IRLS_STEPS):
        r = y2 - design @ coef
        scale = 1.4826 * np.median(np.abs(r), axis=0) * math.sqrt(m / (m - 3))
        scale = np.maximum(scale, 1e-12 * np.maximum(np.abs(y2).max(axis=0), 1.0))
        w = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(r), 1e-300))
        xtwx = np.einsum("mi,mb,mj->bij", design, w, design)
        xtwy = np.einsum("mi,mb,mb->bi", design, w, y2)
        new = np.linalg.solve(xtwx, xtwy[..., None])[..., 0].T
        if np.allclose(new, coef, rtol=0, atol=1e-12 * (1 + np.abs(coef).max())):
            coef = new
            break
        coef = new
    return coef, w


def _edge(n: np.ndarray, centre: float) -> str:
    return "smallest" if math.isclose(centre, math.log(n.min())) else "largest"


def fit_slice(
    label: str, n, loss, flops, d, *, window_dex, min_sizes, robust, keep_unbracketed=False
) -> SliceFit:
    """The windowed parabola of one slice and its row. ValueError with < 3 distinct N, or a
    parabola opening downward on a bracketed (or kept) slice; `used` False (with the reason)
    when the minimum is not bracketed by measured sizes or the fitted vertex lies outside the
    sizes fitted."""
    c = float(np.exp(np.mean(np.log(flops))))
    where = f"isoFLOP slice {label} (C = {c:.3g}, {n.size} runs)"
    if np.unique(n).size < 3:
        raise ValueError(
            f"{where}: a parabola in log N needs >= 3 points with distinct N, got "
            f"{np.unique(n).size}; add model sizes to this budget or drop it"
        )
    sel, centre, bracketed = window(n, loss, window_dex, min_sizes)
    x, y = np.log(n[sel]) - centre, loss[sel]
    coef, w = parabolas(x, y, robust)
    c0, c1, c2 = (float(v) for v in coef[:, 0])
    if c2 <= 0 and not bracketed and not keep_unbracketed:  # left out anyway: no need to fail
        row = {"label": label, "flops": c, "n_points": int(n.size), "n_min": float(n.min()),
               "n_max": float(n.max()), "n_opt": float("nan")}  # fmt: skip
        reason = f"its lowest loss is at its {_edge(n, centre)} size ({math.exp(centre):.3g})"
        return SliceFit(row, x, y, np.empty(0), centre, used=False, reason=reason)
    if c2 <= 0:
        raise ValueError(
            f"{where}: the parabola opens downward (curvature {c2:.3g} <= 0), so it has no "
            "minimum; the slice does not bracket the optimum or is too noisy"
        )
    xs = -c1 / (2 * c2)
    design = np.column_stack([np.ones_like(x), x, x * x])
    fitted = design @ coef[:, 0]
    dof = x.size - 3
    lo = hi = float("nan")
    resid = np.empty(0)
    if dof > 0:
        wv = w[:, 0]
        r = y - fitted
        inv = np.linalg.inv(design.T @ (design * wv[:, None]))
        cov = float(wv @ (r * r)) / dof * inv
        g = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2**2)])
        half = stats.t.ppf(0.975, dof) * math.sqrt(max(float(g @ cov @ g), 0.0))
        lo, hi = xs - half, xs + half
        h = np.einsum("mi,ij,mj->m", design, np.linalg.pinv(design.T @ design), design)
        resid = r / np.sqrt(np.clip(1 - h, 1e-3, None))
        resid = resid - resid.mean()
    # FLOPs per token as a function of N within the slice (exactly 6N under "6ND").
    fpt = np.polyfit(np.log(n), np.log(flops / d), 1)

    def d_at(log_n: float) -> float:
        return c / float(np.exp(np.polyval(fpt, log_n)))

    n_opt = math.exp(centre + xs)
    nw = n[sel]
    inside = bool(nw.min() <= n_opt <= nw.max())
    reason = ""
    if not bracketed:
        reason = f"its lowest loss is at its {_edge(n, centre)} size ({math.exp(centre):.3g})"
    elif not inside:
        reason = (
            f"its fitted minimum N_opt = {n_opt:.3g} lies outside the sizes fitted "
            f"[{nw.min():.3g}, {nw.max():.3g}]"
        )
    row = {
        "label": label,
        "flops": c,
        "n_points": int(n.size),
        "n_min": float(n.min()),
        "n_max": float(n.max()),
        "n_fitted": int(x.size),
        "window_n_min": float(nw.min()),
        "window_n_max": float(nw.max()),
        "n_opt": n_opt,
        "n_opt_lo": math.exp(centre + lo) if np.isfinite(lo) else float("nan"),
        "n_opt_hi": math.exp(centre + hi) if np.isfinite(hi) else float("nan"),
        "d_opt": d_at(centre + xs),
        "d_opt_lo": min(d_at(centre + hi), d_at(centre + lo)) if np.isfinite(lo) else float("nan"),
        "d_opt_hi": max(d_at(centre + hi), d_at(centre + lo)) if np.isfinite(lo) else float("nan"),
        "loss_min": c0 - c1 * c1 / (4 * c2),
        "curvature": c2,
        "extrapolated": not n.min() <= n_opt <= n.max(),
        "bracketed": bracketed and inside,
        "downweighted_runs": int(np.sum(w[:, 0] < 1)) if robust else 0,
        "fpt_fit": [float(v) for v in fpt],
    }
    return SliceFit(row, x, fitted, resid, centre, used=not reason, reason=reason)


def noise_scales(fits: list[SliceFit], prior_dof: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(per-slice residual sd, pooled standardised residuals). A slice's own variance (2 dof
    for 5 sizes) is shrunk towards the pooled one, (dof·v + prior_dof·v_pool)/(dof + prior_dof),
    v_pool from the slices within 10x the median variance, so that one noisy slice neither
    passes its noise to the others nor hides its own."""
    v = np.array([np.mean(f.resid**2) if f.resid.size else np.nan for f in fits])
    dof = np.array([max(f.x.size - 3, 0) for f in fits], float)
    ok = np.isfinite(v) & (v > 0)
    if not ok.any():
        return np.zeros(len(fits)), np.empty(0)
    typical = ok & (v <= 10 * np.median(v[ok]))
    v_pool = float(np.sum((v * dof)[typical]) / np.sum(dof[typical]))
    shrunk = (np.nan_to_num(v) * dof + prior_dof * v_pool) / (dof + prior_dof)
    z = np.concatenate([f.resid / np.sqrt(vi) for f, vi, k in zip(fits, v, ok, strict=True) if k])
    return np.sqrt(shrunk), z


def draws(s: SliceFit, sd: float, z: np.ndarray, n_boot: int, rng, robust: bool) -> np.ndarray:
    """n_boot bootstrap values of ln N_opt for slice `s` (module doc): its fitted parabola plus
    `sd` times standardised residuals drawn from `z`; NaN where the refit has no minimum."""
    if z.size == 0 or sd == 0:  # no slice has residual degrees of freedom: nothing to draw
        return np.full(n_boot, math.log(s.row["n_opt"]))
    y = s.fitted[:, None] + sd * z[rng.integers(0, z.size, (s.x.size, n_boot))]
    coef, _ = parabolas(s.x, y, robust)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(coef[2] > 0, -coef[1] / (2 * coef[2]), np.nan)
    return s.centre + xs
