"""Prediction intervals of the capacity law bits ≈ min(R·P, max bits) (docs/laws.md §3.4, §7
"Prediction intervals").

R is OLS through the origin on the capacity-bound trials, so below the cap the interval is the
OLS prediction interval of a new trial (t-quantile, leverage P²/ΣP², σ̂ of the bound trials'
scatter): parameter uncertainty and residual scatter in closed form. Where the upper end
reaches the cap the law says "max bits at most": the upper end is the cap and the lower end
reaches down by the shortfall the fit's saturated trials show (their bits / max − 1, the
largest one seen), or the OLS lower end when that is lower.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.prediction import Prediction, ols_interval


def ratio_prediction(
    params, bits, max_bits, new_params, new_max_bits, *, bound_frac=0.9, level=0.9
) -> Prediction:
    """Bits at `new_params` (capped at `new_max_bits`), fitted on trials (params, bits,
    max_bits); a trial is capacity-bound when bits < bound_frac · max bits."""
    p, y = np.asarray(params, float), np.asarray(bits, float)
    mx = np.broadcast_to(np.asarray(max_bits, float), p.shape)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(y)) and np.all(np.isfinite(mx))):
        raise ValueError("capacity prediction: params, bits and max bits must be finite")
    bound = y < bound_frac * mx
    if bound.sum() < 2:
        raise ValueError(
            f"capacity prediction: {int(bound.sum())} capacity-bound trials; need >= 2 "
            "(bits < bound_frac · max)"
        )
    p_new = np.atleast_1d(np.asarray(new_params, float))
    cap = np.broadcast_to(np.asarray(new_max_bits, float), p_new.shape)
    yhat, lo, hi, info = ols_interval(p[bound], y[bound], p_new, level=level, intercept=False)
    shortfall = (y[~bound] / mx[~bound] - 1).tolist()  # saturated trials: how far below max
    sat_lo = cap * (1 + min(shortfall)) if shortfall else cap
    capped = hi >= cap
    lo = np.where(capped, np.minimum(np.minimum(lo, cap), sat_lo), lo)
    hi = np.minimum(hi, cap)
    return Prediction(
        x=p_new,
        point=np.minimum(yhat, cap),
        lo=lo,
        hi=hi,
        level=level,
        info=info
        | {
            "quantity": "bits",
            "x": "params",
            "n_bound": int(bound.sum()),
            "saturated_shortfall": shortfall,
            "R": float(np.sum(p[bound] * y[bound]) / np.sum(p[bound] ** 2)),
        },
    )


def capacity_prediction(res, params, max_bits, *, exposures=None, level=0.9) -> Prediction:
    """A CapacityResult's bits at `params` for a data of `max_bits`, from the trials of its
    largest exposure count (or `exposures`)."""
    e = res.ratio.get("exposures") if exposures is None else float(exposures)
    sel = [t for t in res.trials if t["exposures"] == e and t["bits"] > 0]
    if not sel:
        raise ValueError(f"exposures={e}: no trial with positive bits at that exposure count")
    pred = ratio_prediction(
        [t["params"] for t in sel],
        [t["bits"] for t in sel],
        [t["max_bits"] for t in sel],
        params,
        max_bits,
        bound_frac=res.bound_frac,
        level=level,
    )
    return pred.__class__(**{**pred.__dict__, "diagnostics": tuple(res.extrapolation(params))})
