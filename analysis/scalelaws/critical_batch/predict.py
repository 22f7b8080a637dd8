"""Prediction intervals of the critical-batch laws at a new model size N (or (N, D)):
the CBS (or B_crit) scaling law, and the steps to target T(B) of a group not yet run
(docs/laws.md §2.5, §7 "Prediction intervals").

CBS / B_crit: the power law is OLS on logs over the fitted groups, so its prediction interval
is the OLS one (t-quantile, leverage, σ̂ of the groups' scatter about the line): parameter
uncertainty and residual scatter in closed form.

T(B) at a new N: log S_min and log E_min are each a line in log N over the groups (at fixed
D/N, as in Zhang et al.'s Chinchilla sweep). A residual bootstrap over groups (refit both lines
on fitted + resampled residual pairs, which keeps S_min and E_min's correlation) gives the
parameter draws; a fresh residual pair and a resampled T(B) residual of the per-group fits are
added to each draw. Residuals are inflated by √(n / (n − p)).
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.prediction import Prediction, check_level, dof_inflation, ols_interval

QUANTITIES = ("cbs", "b_crit")


def _usable(groups, quantity: str):
    """The groups the scaling law is fitted on (checks.scaling): a finite positive quantity, a
    model size, and a T(B) fit not at a bound (S_min or E_min = 0 measured no CBS)."""
    out = [
        g
        for g in groups
        if g.params is not None
        and np.isfinite(getattr(g, quantity))
        and getattr(g, quantity) > 0
        and g.s_min > 0
        and g.e_min > 0
    ]
    if len(out) < 3:
        raise ValueError(
            f"prediction: {len(out)} groups with a finite {quantity} and a model size; a "
            "scaling prediction needs >= 3"
        )
    return out


def scaling_prediction(
    groups, params, tokens=None, *, quantity: str = "cbs", level: float = 0.9
) -> Prediction:
    """CBS (or B_crit) at model sizes `params` (and data sizes `tokens`: the joint law, when
    the groups vary D independently of N), with `level` OLS prediction intervals in log space."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity: {quantity!r}; use one of {QUANTITIES}")
    gs = _usable(groups, quantity)
    n_new = np.atleast_1d(np.asarray(params, float))
    cols = [np.log([g.params / 1e6 for g in gs])]
    new = [np.log(n_new / 1e6)]
    if tokens is not None:
        d = [g.tokens for g in gs]
        if any(t is None for t in d):
            raise ValueError("tokens: some groups have no data size D; predict from N alone")
        ld = np.log(np.asarray(d, float) / 1e9)
        if np.ptp(ld) == 0 or abs(np.corrcoef(cols[0], ld)[0, 1]) > 0.99:
            raise ValueError(
                "tokens: N and D vary together over these groups; a joint law cannot separate "
                "them: predict from N alone"
            )
        cols.append(ld)
        new.append(np.log(np.broadcast_to(np.asarray(tokens, float), n_new.shape) / 1e9))
    y = np.log([getattr(g, quantity) for g in gs])
    yhat, lo, hi, info = ols_interval(np.column_stack(cols), y, np.column_stack(new), level=level)
    x = (
        n_new.tolist()
        if tokens is None
        else np.column_stack([n_new, np.exp(new[1]) * 1e9]).tolist()
    )
    return Prediction(
        x=x,
        point=np.exp(yhat),
        lo=np.exp(lo),
        hi=np.exp(hi),
        level=level,
        diagnostics=_extrapolation(gs, n_new),
        info=info
        | {
            "quantity": quantity,
            "x": "params" if tokens is None else "params, tokens",
            "log_space": True,
            "groups": [g.group for g in gs],
        },  # fmt: skip
    )


def steps_prediction(
    groups, params: float, batch_sizes, *, level: float = 0.9, n_boot: int = 2000, seed: int = 0
) -> Prediction:
    """Steps to target T(B) = S_min + E_min/B at a new model size `params`, per batch size."""
    level = check_level(level)
    gs = [g for g in _usable(groups, "b_crit") if g.s_min > 0 and g.e_min > 0]
    n = len(gs)
    if n < 3:
        raise ValueError(f"prediction: {n} groups with S_min, E_min > 0; T(B) needs >= 3")
    x = np.column_stack([np.ones(n), np.log([g.params / 1e6 for g in gs])])
    y = np.log([[g.s_min, g.e_min] for g in gs])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    resid = (y - x @ beta) * dof_inflation(n, 2)
    t_res = -np.concatenate([g.residuals for g in gs])  # residuals are log T̂ − log T
    t_res = t_res * dof_inflation(t_res.size, 2 * n)
    b = np.atleast_1d(np.asarray(batch_sizes, float))
    x0 = np.array([1.0, np.log(params / 1e6)])
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, b.size))
    for k in range(n_boot):
        yb = x @ beta + resid[rng.integers(0, n, n)]
        bb = np.linalg.lstsq(x, yb, rcond=None)[0]
        s, e = np.exp(x0 @ bb + resid[rng.integers(0, n)])
        draws[k] = np.log(s + e / b) + rng.choice(t_res, b.size)
    s0, e0 = np.exp(x0 @ beta)
    q = (1 - level) / 2
    lo, hi = np.exp(np.quantile(draws, [q, 1 - q], axis=0))
    return Prediction(
        x=b,
        point=s0 + e0 / b,
        lo=lo,
        hi=hi,
        level=level,
        diagnostics=_extrapolation(gs, np.array([params], float)),
        info={
            "quantity": "steps_to_target",
            "x": "batch_size",
            "params": float(params),
            "method": "residual bootstrap of log S_min, log E_min vs log N over groups + "
            "resampled T(B) residuals",
            "n_boot": n_boot,
            "groups": [g.group for g in gs],
            "log_space": True,
        },
    )


def _extrapolation(gs, n_new) -> tuple[Diagnostic, ...]:
    from scalelaws.core.checks import extrapolation

    ns = [g.params for g in gs]
    return tuple(d for v in n_new for d in extrapolation("params N", float(v), min(ns), max(ns)))
