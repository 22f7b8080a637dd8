"""Optimise an LR schedule under a fitted multi-power law (Luo et al. 2025, arXiv 2503.12811;
docs/laws.md §1, "Schedule optimisation").

Minimise the predicted final loss L̂(T) over monotone non-increasing post-warmup schedules with
η ≤ peak. The schedule is parameterised by non-negative log-decrements u ≥ 0 at knots,
v_k = peak · exp(−Σ_{m≤k} u_m), linearly interpolated to every step (so it stays monotone and
positive); L-BFGS-B runs with the analytic O(T) gradient of L̂(T), first on ~200 knots, then on
every post-warmup step. Warmup: the registry's lr[0:W] = np.linspace(0, peak, W).

Baselines for the same budget, built with the one schedule registry (scalelaws.schedules) and
reported in its terms (name + params, ready for lr_array or a ScheduleSpec): cosine to a floor
(final_lr, peak/10 by default, as the refdata runs) and the best WSD (stable at peak, then a
decay over the last `decay_steps` to final_lr; the decay length and the shape — linear, cosine,
exp, 1-sqrt — searched).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from scalelaws import schedules
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.fitting import single_blas_thread
from scalelaws.core.result import Result
from scalelaws.multipower.checks import steepest_drop
from scalelaws.multipower.law import MPL_PARAMS, predict

WSD_SHAPES = schedules.WSD_SHAPES


MAX_STEPS = 2_000_000  # the optimiser holds a few arrays of this length per iteration


def _check(total_steps: int, warmup_steps: int, peak_lr: float) -> None:
    if not 0 < total_steps <= MAX_STEPS:
        raise ValueError(
            f"total_steps={total_steps}: must lie in 1..{MAX_STEPS:,} (the proposal is optimised "
            "per step); propose a shorter run"
        )
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} must lie in 0..total_steps-1={total_steps - 1}"
        )
    if not (np.isfinite(peak_lr) and peak_lr > 0):
        raise ValueError(f"peak_lr={peak_lr}: must be a finite number > 0 (e.g. 3e-4)")


def wsd_params(
    total_steps: int, warmup_steps: int, fraction: float, shape: str, floor: float
) -> dict:
    """Registry params of a WSD that decays over `fraction` of the post-warmup steps."""
    m = total_steps - warmup_steps
    n = int(min(max(round(float(np.clip(fraction, 0.0, 1.0)) * m), 1), m))
    return {"decay_steps": n, "shape": shape, "final_lr": float(floor)}


def baseline_lr(baseline: Mapping, total_steps: int, warmup_steps: int, peak_lr: float):
    """The per-update LR of a baseline {"name", "params", ...} (scalelaws.schedules.lr_array)."""
    return schedules.lr_array(
        baseline["name"], peak_lr, total_steps, warmup_steps, **baseline["params"]
    )


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


@dataclass(frozen=True, eq=False)
class ScheduleProposal(Result):
    """The proposed per-update schedule (warmup included), its predicted final loss, and the
    cosine and best-WSD baselines of the same budget ({name, params, predicted_final_loss}).

    intervals: 95% ranges of the predicted final loss of "proposed", "cosine" and "wsd" over the
    fit's bootstrap refits (empty without them); `interval` is the proposal's.
    """

    lr: np.ndarray
    predicted_final_loss: float
    baselines: dict = field(default_factory=dict)
    total_steps: int = 0
    warmup_steps: int = 0
    peak_lr: float = 0.0
    params: dict = field(default_factory=dict)  # the MPL parameters it was optimised under
    intervals: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict = field(default_factory=dict)
    fit: str = ""  # the FIT.json it came from, when read from a file
    fit_input_hash: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", np.asarray(self.lr, dtype=np.float64))

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.intervals.get("proposed")

    def baseline_lr(self, name: str) -> np.ndarray:
        """Per-update LR of baseline `name` ("cosine" or "wsd")."""
        return baseline_lr(self.baselines[name], self.total_steps, self.warmup_steps, self.peak_lr)

    def predict(self, steps=None) -> np.ndarray:
        """Predicted loss of the proposed schedule after each of `steps` updates (default: every
        step with Σ lr[0:s] > 0)."""
        steps = np.flatnonzero(np.cumsum(self.lr) > 0) + 1 if steps is None else steps
        return predict(self.params, self.lr, steps)


def best_wsd(
    params: Mapping[str, float],
    total_steps: int,
    warmup_steps: int,
    peak_lr: float,
    floor: float,
    fractions: np.ndarray | None = None,
) -> dict:
    """Best WSD over decay length × shape: a grid over the decay fraction f of the post-warmup
    steps, then a bounded scalar search around the best f. Returns {name: "wsd", params
    (registry: decay_steps, shape, final_lr), predicted_final_loss, decay_fraction, shape,
    floor}."""
    from scipy.optimize import minimize_scalar

    fr = np.linspace(0.02, 0.6, 30) if fractions is None else np.asarray(fractions)
    shapes = [s for s in WSD_SHAPES if s != "exp" or floor > 0]  # exp decays to final_lr > 0
    best = None
    for shape in shapes:

        def f(x, shape=shape):
            p = wsd_params(total_steps, warmup_steps, x, shape, floor)
            return final_loss(
                params, schedules.lr_array("wsd", peak_lr, total_steps, warmup_steps, **p)
            )

        vals = np.array([f(x) for x in fr])
        i = int(np.argmin(vals))
        lo, hi = fr[max(i - 1, 0)], fr[min(i + 1, fr.size - 1)]
        r = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
        frac, val = (
            (float(r.x), float(r.fun)) if r.fun < vals[i] else (float(fr[i]), float(vals[i]))
        )
        if best is None or val < best["predicted_final_loss"]:
            p = wsd_params(total_steps, warmup_steps, frac, shape, floor)
            best = {
                "name": "wsd",
                "params": p,
                "predicted_final_loss": val,
                "decay_fraction": p["decay_steps"] / (total_steps - warmup_steps),
                "shape": shape,
                "floor": floor,
            }
    return best


def _knot_lr(u, pos, m, peak, floor=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Knot values v_k = floor + (peak − floor)·exp(−Σ_{j≤k} u_j), linear between knots."""
    v = floor + (peak - floor) * np.exp(-np.cumsum(u))
    return np.interp(np.arange(m), pos, v), v


def _knot_grad(g_post, pos, v, u, floor=0.0) -> np.ndarray:
    """Chain ∂L/∂lr_post → ∂L/∂v (transpose of linear interpolation) → ∂L/∂u."""
    m = g_post.size
    steps = np.arange(m)
    k = np.clip(np.searchsorted(pos, steps, side="right") - 1, 0, pos.size - 2)
    t = (steps - pos[k]) / (pos[k + 1] - pos[k])
    gv = np.bincount(k, g_post * (1 - t), minlength=pos.size)
    gv += np.bincount(k + 1, g_post * t, minlength=pos.size)
    return -np.cumsum((gv * (v - floor))[::-1])[::-1]  # ∂v_k/∂u_m = −(v_k − floor), k ≥ m


def _u_bounds(pos: np.ndarray, max_log_drop: float | None) -> list[tuple[float, float]]:
    """0 ≤ u_k ≤ max_log_drop × (steps since the previous knot); 20 without a bound."""
    if max_log_drop is None:
        return [(0.0, 20.0)] * pos.size
    gaps = np.diff(np.concatenate([[-1], pos]))
    return [(0.0, float(min(20.0, max_log_drop * g))) for g in gaps]


def _optimise_knots(params, head, m, peak, pos, u0, maxiter, floor=0.0, max_log_drop=None):
    from scipy.optimize import minimize

    def f(u):
        post, v = _knot_lr(u, pos, m, peak, floor)
        loss, g = final_loss_grad(params, np.concatenate([head, post]))
        return loss, _knot_grad(g[head.size :], pos, v, u, floor)

    bounds = _u_bounds(pos, max_log_drop)
    u0 = np.clip(u0, [b[0] for b in bounds], [b[1] for b in bounds])
    with single_blas_thread():
        res = minimize(
            f,
            u0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-12},
        )
    return res.x, float(res.fun)


def _u_from_lr(post: np.ndarray, pos: np.ndarray, peak: float, floor: float = 0.0) -> np.ndarray:
    excess = np.maximum(post[pos] - floor, 1e-12 * peak) / (peak - floor)
    logv = np.log(np.maximum(excess, 1e-30))
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
    lr_floor: float = 0.0,
    max_log_drop: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScheduleProposal:
    """Best monotone non-increasing schedule under the MPL, with cosine and best-WSD baselines.

    `floor` is the final LR of the cosine and WSD baselines (default peak/10). The optimised
    schedule stays >= `lr_floor` and drops by at most `max_log_drop` in log LR per step (at the
    knots; None: no bound); scalelaws.multipower.propose derives both from the fit (docs/laws.md §1.6).
    Returns a per-step array of length total_steps, warmup included. progress(done, 3) after
    the baselines, the knot stage and the per-step stage.
    """
    tick = progress or (lambda done, total: None)
    missing = [k for k in MPL_PARAMS if k not in params]
    if missing:
        raise ValueError(f"schedule optimisation needs multipower params; missing {missing}")
    _check(total_steps, warmup_steps, peak_lr)
    floor = peak_lr / 10 if floor is None else float(floor)
    if not 0 <= lr_floor < peak_lr:
        raise ValueError(f"lr_floor={lr_floor:g}: must lie in [0, peak_lr={peak_lr:g})")
    head = schedules.lr_array("constant", peak_lr, total_steps, warmup_steps)[:warmup_steps]
    m = total_steps - warmup_steps
    kw = dict(floor=lr_floor, max_log_drop=max_log_drop)

    cosine = {"name": "cosine", "params": {"final_lr": floor}, "floor": floor}
    cosine["predicted_final_loss"] = final_loss(
        params, baseline_lr(cosine, total_steps, warmup_steps, peak_lr)
    )
    wsd = best_wsd(params, total_steps, warmup_steps, peak_lr, floor)
    start = baseline_lr(wsd, total_steps, warmup_steps, peak_lr)[warmup_steps:]
    tick(1, 3)

    pos = np.unique(np.round(np.linspace(0, m - 1, min(knots, m))).astype(int))
    if pos.size >= 2:
        u0 = _u_from_lr(start, pos, peak_lr, lr_floor)
        u, _ = _optimise_knots(params, head, m, peak_lr, pos, u0, maxiter, **kw)
        start, _ = _knot_lr(u, pos, m, peak_lr, lr_floor)
    tick(2, 3)
    if per_step and m >= 2:
        # every step from a little before the decay starts; the coarse knots before that
        decayed = np.flatnonzero(start < peak_lr * (1 - 1e-6))
        first = int(decayed[0]) if decayed.size else m - 1
        spacing = int(np.ceil(m / max(knots, 1)))
        tail = max(first - 2 * spacing, 0)
        pos = np.union1d(pos[pos < tail], np.arange(tail, m))
        u0 = _u_from_lr(start, pos, peak_lr, lr_floor)
        u, _ = _optimise_knots(params, head, m, peak_lr, pos, u0, maxiter, **kw)
        start, _ = _knot_lr(u, pos, m, peak_lr, lr_floor)
    tick(3, 3)
    lr = np.concatenate([head, start])
    return ScheduleProposal(
        lr=lr,
        predicted_final_loss=final_loss(params, lr),
        baselines={"cosine": cosine, "wsd": wsd},
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        peak_lr=peak_lr,
        params={k: float(params[k]) for k in MPL_PARAMS},
        info={"floor": floor, "knots": knots, "per_step": per_step, "lr_floor": lr_floor}
        | {"max_log_drop": max_log_drop, "steepest_log_drop": steepest_drop(lr, warmup_steps)},
    )
