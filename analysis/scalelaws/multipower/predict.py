"""Prediction intervals of the multi-power law: loss at a step under a schedule (docs/laws.md
§7, "Prediction intervals").

Parameter uncertainty: the law at every bootstrap refit's parameters (the bootstrap resamples
whole fit curves, so the refits carry the curve-to-curve spread). Residual scatter: the fit
curves' residuals y − ŷ, drawn at random and added (losses span a narrow range, so additive and
log-space scatter agree to < 1%). Residuals along a curve are autocorrelated; that changes how
many independent checks a back-test has, not the marginal interval of one point, which is what
the interval states.

residuals="oob-scaled" (opt-in) scales the residuals by the fit's out-of-bag ratio (median
|error| of the bootstrap refits on the fit curves they did not draw over that on the curves they
drew; multipower.fit.oob_residuals) instead of √(n/(n − p)), whichever is larger. Measured on
the public curves it over-covers (docs/laws.md §7), so it is not the default.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.prediction import Prediction, dof_inflation, predictive_interval, residuals_only
from scalelaws.multipower.law import predict

RESIDUALS = ("in-sample", "oob-scaled")


def mpl_prediction(
    fit,
    lr: np.ndarray,
    steps=None,
    *,
    level: float = 0.9,
    seed: int = 0,
    residuals: str = "in-sample",
):
    """Prediction (steps -> loss with `level` intervals) of a MultipowerFit under `lr`.

    residuals: "in-sample" (the fit's residuals, inflated by √(n/(n − p))) or "oob-scaled"
    (module doc; needs a fit with a bootstrap that left some curve out)."""
    if residuals not in RESIDUALS:
        raise ValueError(f"residuals: unknown {residuals!r}; use one of {', '.join(RESIDUALS)}")
    lr = np.asarray(lr, float)
    if steps is None:
        steps = np.flatnonzero(np.cumsum(lr) > 0) + 1
    steps = np.asarray(steps)
    point = predict(fit.params, lr, steps, fit.law)
    boots = fit.bootstrap_params
    draws = np.array([predict(p, lr, steps, fit.law) for p in boots]) if boots else None
    n_params = len(fit.params)
    res = np.asarray(fit.residuals, float)
    factor = 1.0
    if residuals == "oob-scaled":
        scale = fit.info.get("oob_residual_scale")
        if scale is None or not np.isfinite(scale):
            raise ValueError(
                "residuals='oob-scaled' needs a fit whose bootstrap left some fit curve out of "
                "a resample (n_boot >= 20 and >= 2 fit curves)"
            )
        factor = max(float(scale), dof_inflation(res.size, n_params))
        res, n_params = res * factor, 0  # the factor replaces the dof inflation
    _, lo, hi = predictive_interval(
        point,
        draws,
        res,
        level=level,
        log=False,
        n_params=n_params,
        seed=seed,
    )
    diags = tuple(fit.extrapolation(lr, steps))
    if not boots:
        diags += (residuals_only("fit with n_boot >= 20"),)
    return Prediction(
        x=steps,
        point=point,
        lo=lo,
        hi=hi,
        level=level,
        diagnostics=diags,
        info={
            "quantity": "loss",
            "x": "step",
            "method": "bootstrap refits over fit curves + resampled residuals (additive)",
            "residuals": residuals,
            "residual_factor": factor if residuals == "oob-scaled" else None,
            "n_draws": len(boots),
            "n_residuals": len(fit.residuals),
        },
    )
