"""Prediction intervals of the multi-power law: loss at a step under a schedule (docs/laws.md
§7, "Prediction intervals").

Parameter uncertainty: the law at every bootstrap refit's parameters (the bootstrap resamples
whole fit curves, so the refits carry the curve-to-curve spread). Residual scatter: the fit
curves' residuals y − ŷ, drawn at random and added (losses span a narrow range, so additive and
log-space scatter agree to < 1%). Residuals along a curve are autocorrelated; that changes how
many independent checks a back-test has, not the marginal interval of one point, which is what
the interval states.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.prediction import Prediction, predictive_interval
from scalelaws.multipower.law import predict


def mpl_prediction(fit, lr: np.ndarray, steps=None, *, level: float = 0.9, seed: int = 0):
    """Prediction (steps -> loss with `level` intervals) of a MultipowerFit under `lr`."""
    lr = np.asarray(lr, float)
    if steps is None:
        steps = np.flatnonzero(np.cumsum(lr) > 0) + 1
    steps = np.asarray(steps)
    point = predict(fit.params, lr, steps, fit.law)
    boots = fit.bootstrap_params
    draws = np.array([predict(p, lr, steps, fit.law) for p in boots]) if boots else None
    n_params = len(fit.params)
    _, lo, hi = predictive_interval(
        point,
        draws,
        np.asarray(fit.residuals),
        level=level,
        log=False,
        n_params=n_params,
        seed=seed,
    )
    diags = tuple(fit.extrapolation(lr, steps))
    if not boots:
        diags += (
            Diagnostic(
                "NO_INTERVAL",
                "warning",
                "the fit has no bootstrap refits: the interval holds residual scatter only, "
                "no parameter uncertainty",
                "fit with n_boot >= 20",
            ),
        )
    return Prediction(
        x=steps.tolist(),
        point=point.tolist(),
        lo=lo.tolist(),
        hi=hi.tolist(),
        level=level,
        diagnostics=diags,
        info={
            "quantity": "loss",
            "x": "step",
            "method": "bootstrap refits over fit curves + resampled residuals (additive)",
            "n_draws": len(boots),
            "n_residuals": len(fit.residuals),
        },
    )
