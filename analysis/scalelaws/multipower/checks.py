"""What a multi-power-law fit can vouch for (docs/laws.md §1.6, §7): the range of its fitting
curves, and the diagnostics that compare curves and proposals with that range.

`fit_range(curves)` is stored in MultipowerFit.info["fit_range"]; scalelaws.multipower.propose reads it to
keep a proposed schedule inside it (an LR floor and a bound on the per-step drop of log LR) and
to warn when a proposal predicts a loss no measured run supports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scalelaws.core import checks
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.multipower.curves import Curve

DROP_SHARE = 0.01  # drops to below 1% of a curve's peak do not count towards the drop bound


def steepest_drop(lr: np.ndarray, warmup_steps: int, min_share: float = 0.0) -> float:
    """Largest one-step drop of log LR after warmup (inf for a drop to 0), over the steps whose
    LR stays >= min_share of the peak; 0 when the LR never drops."""
    post = np.asarray(lr, float)[max(warmup_steps - 1, 0) :]
    if post.size < 2:
        return 0.0
    a, b = post[:-1], post[1:]
    keep = (a > b) & (b >= min_share * post.max())
    if not keep.any():
        return 0.0
    with np.errstate(divide="ignore"):
        return float(np.max(np.log(a[keep]) - np.log(b[keep])))


def check_params(params, names, law: str = "multipower") -> None:
    """ValueError unless `params` has every parameter of the law, each a finite number > 0."""
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(
            f"params: a {law} fit needs {', '.join(names)}; {', '.join(missing)} missing "
            "(a FIT.json of another law?)"
        )
    for k in names:
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
            raise ValueError(
                f"params: {k} = {v!r}; every {law} parameter must be a finite number > 0: "
                "refit, or fix the FIT.json"
            )


def _post_warmup(c: Curve) -> tuple[np.ndarray, int]:
    """The LR of the updates up to the curve's last evaluated step, and its warmup length (the
    first update at the curve's peak LR, + 1)."""
    lr = np.asarray(c.lr, float)[: int(np.max(c.steps))]
    return lr, int(np.argmax(lr >= lr.max() * (1 - 1e-9))) + 1


def fit_range(curves: Sequence[Curve]) -> dict:
    """Steps, LRs and losses the fitting curves cover (all curves when none has role "fit"):
    max_step, peak_lr, min_lr (lowest post-warmup LR used), max_log_drop (steepest one-step drop
    of log LR above 1% of the peak), best_loss / best_curve / best_step (lowest last measured
    loss over every curve, fit and test)."""
    fitted = [c for c in curves if c.role == "fit"] or list(curves)
    mins, drops = [], []
    for c in fitted:
        lr, warm = _post_warmup(c)
        mins.append(float(lr[warm - 1 :].min()))
        drops.append(steepest_drop(lr, warm, DROP_SHARE))
    best = min(curves, key=lambda c: float(np.asarray(c.loss)[-1]))
    return {
        "max_step": int(max(int(np.max(c.steps)) for c in fitted)),
        "peak_lr": float(max(float(np.max(c.lr)) for c in fitted)),
        "min_lr": float(min(mins)),
        "max_log_drop": float(max(drops)),
        "best_loss": float(np.asarray(best.loss)[-1]),
        "best_curve": best.name,
        "best_step": int(np.asarray(best.steps)[-1]),
    }


def curve_noise(curves: Sequence[Curve]) -> float:
    """The fitting curves' own noise in log loss (checks.curve_noise)."""
    fitted = [c for c in curves if c.role == "fit"]
    y = np.concatenate([np.asarray(c.loss, float) for c in fitted])
    ids = np.concatenate([np.full(len(c.loss), i) for i, c in enumerate(fitted)])
    return checks.curve_noise(y, ids)


def prediction_extrapolation(rng: dict, lr: np.ndarray, steps) -> tuple[Diagnostic, ...]:
    """EXTRAPOLATION for a prediction under `lr` at `steps` beyond the fit's range: more steps,
    a higher peak LR, or an LR below the lowest post-warmup LR of the fitting curves."""
    if not rng:
        return ()
    lr = np.asarray(lr, float)
    last = int(np.max(steps)) if steps is not None and np.size(steps) else lr.size
    used, warm = lr[:last], int(np.argmax(lr >= lr.max() * (1 - 1e-9))) + 1
    action = "check the prediction with one run in that range"
    return (
        checks.extrapolation("steps", float(last), 0.0, rng["max_step"], "warning", action)
        + checks.extrapolation("peak LR", float(used.max()), 0.0, rng["peak_lr"] * (1 + 1e-9))
        + checks.extrapolation(
            "lowest LR", float(used[warm - 1 :].min()), rng["min_lr"] * (1 - 1e-9), np.inf
        )
    )


def test_extrapolation(curves: Sequence[Curve], rng: dict) -> tuple[Diagnostic, ...]:
    """EXTRAPOLATION (info) for each test curve longer than, or at a higher peak LR than, the
    fitting curves: its test metrics measure an extrapolation."""
    out: list[Diagnostic] = []
    for c in curves:
        if c.role != "test":
            continue
        for what, value, hi in (
            ("steps", float(np.max(c.steps)), rng["max_step"]),
            ("peak LR", float(np.max(c.lr)), rng["peak_lr"] * (1 + 1e-9)),
        ):
            for d in checks.extrapolation(
                f"{c.name}: {what}", value, 0.0, hi, "info", "its test metrics are a forecast"
            ):
                out.append(Diagnostic(d.code, d.severity, d.message, d.action, c.name))
    return tuple(out)


def lr_diagnostics(curves: Sequence[Curve]) -> tuple[Diagnostic, ...]:
    """LR_SPEC_MISMATCH per curve whose spec disagreed with its logged lr; one LR_REBUILT."""
    out = [
        Diagnostic(
            "LR_SPEC_MISMATCH",
            "warning",
            "spec LR disagrees with the logged lr; rebuilt from the lr rows",
            "check that the trial's spec matches its curve (collect again)",
            c.name,
        )
        for c in curves
        if c.lr_source == "spec-mismatch"
    ]
    rebuilt = [c.name for c in curves if c.lr_source == "rebuilt"]
    if rebuilt:
        out.append(
            Diagnostic(
                "LR_REBUILT",
                "info",
                f"per-step LR rebuilt from the logged lr rows (linear between rows) for "
                f"{len(rebuilt)} curve(s): "
                + ", ".join(rebuilt[:5])
                + (" ..." if len(rebuilt) > 5 else ""),
                "pass study= (exact LR from each trial's spec) when the rows are sparse",
            )
        )
    return tuple(out)


def proposal_diagnostics(res, prop, n_samples: int) -> tuple[Diagnostic, ...]:
    """What a schedule proposal (scalelaws.multipower.propose) must say about itself: no interval, too few
    resamples, no fit range, extrapolation in peak LR and steps, and a predicted final loss
    below the law's asymptote L0 or below the best measured run by more than the fit's error
    (max of 2 × the fit's RMSE and the half-width of the proposal's interval)."""
    out: list[Diagnostic] = []
    if n_samples == 0:
        out.append(
            Diagnostic(
                "NO_INTERVAL",
                "info",
                "the fit has no bootstrap refits: no interval on the predicted losses",
                "fit with n_boot >= 20 (the CLI's --bootstrap)",
            )
        )
    elif n_samples < checks.MIN_RESAMPLES:
        out += checks.resamples(n_samples, 0)
    rng = res.info.get("fit_range") or {}
    if not rng:
        out.append(
            Diagnostic(
                "NO_FIT_RANGE",
                "info",
                "the fit records no range of its curves: the schedule is not kept inside it",
                "propose from a fit made by this scalelab (FIT.json with info.fit_range)",
            )
        )
    peak = rng.get("peak_lr") or res.info.get("peak_lr")
    longest = rng.get("max_step") or res.info.get("max_step")
    if peak:
        out += checks.extrapolation(
            "peak_lr", prop.peak_lr, 0.0, peak * (1 + 1e-6), "warning", "fit on curves at this LR"
        )
    if longest:
        out += checks.extrapolation(
            "total_steps", prop.total_steps, 0.0, longest, "info", "check it with one such run"
        )
    return tuple(out) + _below(res, prop, rng)


def _below(res, prop, rng: dict) -> tuple[Diagnostic, ...]:
    out = []
    pred, l0 = prop.predicted_final_loss, prop.params["L0"]
    if pred < l0:
        out.append(
            Diagnostic(
                "BELOW_ASYMPTOTE",
                "warning",
                f"predicted final loss {pred:.4f} is below the law's asymptote L0 = {l0:.4f}",
                "the law is used where it does not hold: do not run this schedule unchecked",
                "predicted_final_loss",
            )
        )
    best, rmse = rng.get("best_loss"), (res.metrics.get("fit") or {}).get("rmse")
    if best is None or rmse is None:
        return tuple(out)
    iv = prop.intervals.get("proposed")
    margin = max(2 * rmse, (iv[1] - iv[0]) / 2 if iv else 0.0)
    if pred < best - margin:
        out.append(
            Diagnostic(
                "BELOW_BEST_RUN",
                "warning",
                f"predicted final loss {pred:.4f} is {best - pred:.3g} below the best measured "
                f"run ({rng['best_curve']}: {best:.4f} at step {rng['best_step']}), more than "
                f"the fit's error {margin:.3g}",
                "no run vouches for this gain: run the proposal next to the baselines",
                "predicted_final_loss",
            )
        )
    return tuple(out)
