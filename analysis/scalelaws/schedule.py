"""Optimise an LR schedule under a fitted multi-power law (Luo et al. 2025, arXiv 2503.12811).

Minimise the predicted final loss L̂(T) over monotone non-increasing post-warmup schedules with
η ≤ peak. The schedule is parameterised by non-negative log-decrements u ≥ 0 at knots,
v_k = peak · exp(−Σ_{m≤k} u_m), linearly interpolated to every step (so it stays monotone and
positive); L-BFGS-B runs with the analytic O(T) gradient of L̂(T), first on ~200 knots, then on
every post-warmup step. Warmup: lr[0:W] = np.linspace(0, peak, W) (refdata README rule).

Baselines for the same budget: cosine to a floor (peak/10 by default, as the refdata runs) and
the best WSD (stable at peak, then decay over the last fraction f of the post-warmup steps to the
floor; f and the shape — linear, cosine, exponential, 1-sqrt — searched).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from scalelaws.fitting import single_blas_thread
from scalelaws.multipower import MPL_PARAMS, predict

WSD_SHAPES = ("linear", "cosine", "exponential", "1-sqrt")


def warmup(warmup_steps: int, peak_lr: float) -> np.ndarray:
    return np.linspace(0.0, peak_lr, warmup_steps)


def _check(total_steps: int, warmup_steps: int, peak_lr: float) -> None:
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} must lie in 0..total_steps-1={total_steps - 1}"
        )
    if peak_lr <= 0:
        raise ValueError(f"peak_lr={peak_lr} must be > 0")


def cosine_schedule(
    total_steps: int, warmup_steps: int, peak_lr: float, floor: float
) -> np.ndarray:
    """Warmup, then floor + (peak − floor)/2 · (1 + cos(π·(s − W)/(T − W))) (refdata formula)."""
    _check(total_steps, warmup_steps, peak_lr)
    s = np.arange(warmup_steps, total_steps)
    post = floor + (peak_lr - floor) / 2 * (
        1 + np.cos(np.pi * (s - warmup_steps) / (total_steps - warmup_steps))
    )
    return np.concatenate([warmup(warmup_steps, peak_lr), post])


def wsd_schedule(
    total_steps: int, warmup_steps: int, peak_lr: float, floor: float, fraction: float, shape: str
) -> np.ndarray:
    """Warmup, peak until the last `fraction` of post-warmup steps, then decay towards `floor`
    (progress p = i/n over the n decay steps, so the last step is just above the floor, as in
    the refdata `wsd_20000_24000` and scalelab.schedules)."""
    _check(total_steps, warmup_steps, peak_lr)
    if shape not in WSD_SHAPES:
        raise ValueError(f"WSD shape {shape!r} unknown: use one of {WSD_SHAPES}")
    m = total_steps - warmup_steps
    n_decay = int(round(np.clip(fraction, 0.0, 1.0) * m))
    p = np.arange(n_decay) / max(n_decay, 1)  # decay progress 0 .. 1 − 1/n (refdata rule)
    if shape == "linear":
        dec = peak_lr + (floor - peak_lr) * p
    elif shape == "cosine":
        dec = floor + (peak_lr - floor) / 2 * (1 + np.cos(np.pi * p))
    elif shape == "exponential":
        dec = peak_lr ** (1 - p) * max(floor, 1e-12 * peak_lr) ** p
    else:  # 1-sqrt
        dec = floor + (peak_lr - floor) * (1 - np.sqrt(p))
    post = np.concatenate([np.full(m - n_decay, peak_lr), dec])
    return np.concatenate([warmup(warmup_steps, peak_lr), post])


def final_loss(params: Mapping[str, float], lr: np.ndarray) -> float:
    """Predicted loss after all len(lr) updates."""
    return float(predict(params, lr, [len(lr)])[0])


def final_loss_grad(params: Mapping[str, float], lr: np.ndarray) -> tuple[float, np.ndarray]:
    """L̂(T) and ∂L̂(T)/∂lr[i] for every step, O(T).

    0-based: d_j = lr[j−1] − lr[j], R_j = Σ_{i≥j} lr[i], x_j = C·lr[j]^(−γ)·R_j, G = 1 − (1+x)^(−β).
    L = L0 + A·S^(−α) − B·Σ_j d_j·G_j, S = Σ lr. With G'_j = β(1+x_j)^(−β−1):
    ∂L/∂lr[i] = −αA·S^(−α−1) − B·[G_{i+1} − G_i + Σ_{j≤i} d_j G'_j C lr[j]^(−γ) − γ d_i G'_i x_i/lr[i]].
    """
    L0, A, alpha, B, C, beta, gamma = (float(params[k]) for k in MPL_PARAMS)
    lr = np.asarray(lr, dtype=float)
    lr_safe = np.maximum(lr, 1e-30)
    S = lr.sum()
    R = np.cumsum(lr[::-1])[::-1]  # R[j] = Σ_{i ≥ j} lr[i]
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    ce = C * lr_safe ** (-gamma)
    x = ce * R
    q = (1.0 + x) ** (-beta)
    G = 1.0 - q
    Gp = beta * q / (1.0 + x)
    G[0] = Gp[0] = 0.0  # no term for j = 0
    loss = L0 + A * S ** (-alpha) - B * np.sum(d * G)
    inner = np.cumsum(d * Gp * ce) - gamma * d * Gp * x / lr_safe
    inner += np.concatenate([G[1:], [0.0]]) - G
    grad = -alpha * A * S ** (-alpha - 1) - B * inner
    return float(loss), grad


@dataclass(frozen=True)
class ScheduleProposal:
    """The proposed per-step schedule (warmup included) and the baselines' predicted losses."""

    lr: np.ndarray
    predicted_final_loss: float
    baselines: dict = field(default_factory=dict)
    total_steps: int = 0
    warmup_steps: int = 0
    peak_lr: float = 0.0

    def to_dict(self) -> dict:
        return {
            "lr": [float(v) for v in self.lr],
            "predicted_final_loss": self.predicted_final_loss,
            "baselines": self.baselines,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "peak_lr": self.peak_lr,
        }


def best_wsd(
    params: Mapping[str, float],
    total_steps: int,
    warmup_steps: int,
    peak_lr: float,
    floor: float,
    fractions: np.ndarray | None = None,
) -> dict:
    """Grid over decay fraction × shape, then a bounded scalar search around the best fraction."""
    from scipy.optimize import minimize_scalar

    fr = np.linspace(0.02, 0.6, 30) if fractions is None else np.asarray(fractions)
    best = None
    for shape in WSD_SHAPES:

        def f(x, shape=shape):
            return final_loss(
                params, wsd_schedule(total_steps, warmup_steps, peak_lr, floor, x, shape)
            )

        vals = np.array([f(x) for x in fr])
        i = int(np.argmin(vals))
        lo, hi = fr[max(i - 1, 0)], fr[min(i + 1, fr.size - 1)]
        r = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
        frac, val = (
            (float(r.x), float(r.fun)) if r.fun < vals[i] else (float(fr[i]), float(vals[i]))
        )
        if best is None or val < best["predicted_final_loss"]:
            best = {
                "predicted_final_loss": val,
                "decay_fraction": frac,
                "shape": shape,
                "floor": floor,
            }
    return best


def _knot_lr(u: np.ndarray, pos: np.ndarray, m: int, peak: float) -> tuple[np.ndarray, np.ndarray]:
    v = peak * np.exp(-np.cumsum(u))
    return np.interp(np.arange(m), pos, v), v


def _knot_grad(g_post: np.ndarray, pos: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Chain ∂L/∂lr_post → ∂L/∂v (transpose of linear interpolation) → ∂L/∂u."""
    m = g_post.size
    steps = np.arange(m)
    k = np.clip(np.searchsorted(pos, steps, side="right") - 1, 0, pos.size - 2)
    t = (steps - pos[k]) / (pos[k + 1] - pos[k])
    gv = np.bincount(k, g_post * (1 - t), minlength=pos.size)
    gv += np.bincount(k + 1, g_post * t, minlength=pos.size)
    return -np.cumsum((gv * v)[::-1])[::-1]  # ∂v_k/∂u_m = −v_k for k ≥ m


def _optimise_knots(params, head, m, peak, pos, u0, maxiter):
    from scipy.optimize import minimize

    def f(u):
        post, v = _knot_lr(u, pos, m, peak)
        loss, g = final_loss_grad(params, np.concatenate([head, post]))
        return loss, _knot_grad(g[head.size :], pos, v, u)

    with single_blas_thread():
        res = minimize(
            f,
            u0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, 20.0)] * u0.size,
            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-12},
        )
    return res.x, float(res.fun)


def _u_from_lr(post: np.ndarray, pos: np.ndarray, peak: float) -> np.ndarray:
    logv = np.log(np.maximum(post[pos], 1e-30) / peak)
    return np.maximum(-np.diff(np.concatenate([[0.0], logv])), 0.0)


def optimise_schedule(
    params: Mapping[str, float],
    total_steps: int,
    warmup_steps: int,
    peak_lr: float,
    *,
    floor: float | None = None,
    knots: int = 200,
    per_step: bool = True,
    maxiter: int = 3000,
) -> ScheduleProposal:
    """Best monotone non-increasing schedule under the MPL, with cosine and best-WSD baselines.

    `floor` is the final LR of the cosine and WSD baselines (default peak/10); the optimised
    schedule has no floor. Returns a per-step array of length total_steps, warmup included.
    """
    missing = [k for k in MPL_PARAMS if k not in params]
    if missing:
        raise ValueError(f"schedule optimisation needs multipower params; missing {missing}")
    _check(total_steps, warmup_steps, peak_lr)
    floor = peak_lr / 10 if floor is None else float(floor)
    head = warmup(warmup_steps, peak_lr)
    m = total_steps - warmup_steps

    cos_lr = cosine_schedule(total_steps, warmup_steps, peak_lr, floor)
    baselines = {
        "cosine": {"predicted_final_loss": final_loss(params, cos_lr), "floor": floor},
        "wsd": best_wsd(params, total_steps, warmup_steps, peak_lr, floor),
    }
    w = baselines["wsd"]
    start = wsd_schedule(
        total_steps, warmup_steps, peak_lr, floor, w["decay_fraction"], w["shape"]
    )[warmup_steps:]

    pos = np.unique(np.round(np.linspace(0, m - 1, min(knots, m))).astype(int))
    if pos.size >= 2:
        u, _ = _optimise_knots(
            params, head, m, peak_lr, pos, _u_from_lr(start, pos, peak_lr), maxiter
        )
        start, _ = _knot_lr(u, pos, m, peak_lr)
    if per_step and m >= 2:
        # every step from a little before the decay starts; the coarse knots before that
        decayed = np.flatnonzero(start < peak_lr * (1 - 1e-6))
        first = int(decayed[0]) if decayed.size else m - 1
        spacing = int(np.ceil(m / max(knots, 1)))
        tail = max(first - 2 * spacing, 0)
        pos = np.union1d(pos[pos < tail], np.arange(tail, m))
        u, _ = _optimise_knots(
            params, head, m, peak_lr, pos, _u_from_lr(start, pos, peak_lr), maxiter
        )
        start, _ = _knot_lr(u, pos, m, peak_lr)
    lr = np.concatenate([head, start])
    return ScheduleProposal(
        lr=lr,
        predicted_final_loss=final_loss(params, lr),
        baselines=baselines,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        peak_lr=peak_lr,
    )
