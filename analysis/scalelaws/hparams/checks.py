"""Diagnostics of the hyperparameter fits (docs/laws.md §9.6; codes registered, with their
meaning and action, in scalelaws.core.diagnostics.CODES).

Per cell (scalelaws.hparams.surface):
- OPTIMUM_AT_EDGE: the quadratic's minimum along an axis lies outside the swept LRs or batch
  sizes; the cell reports its best run there (never the extrapolated stationary point, whose
  distance is given as a factor) and leaves that axis out of the laws.
- NOT_CONVEX: the surface has no minimum (Hessian not positive definite): the best run is
  reported and the cell is left out of both laws.
- FEW_GRID_VALUES: fewer than 3 distinct LRs or batch sizes: that axis is not fitted (its value
  is the best one swept, e.g. the only batch size) and the cell is left out of its law.
- BOOTSTRAP_FAILED: more than 10% of the resamples had no minimum: the interval rests on the
  others.
- MISFIT (only with seeds): the quadratic misses the point means by more than MISFIT_RATIO
  times the seeds' own scatter of a mean (σ_seed/√k) and more than MISFIT_FLOOR of the loss:
  the loss is not quadratic over this grid.

Laws (scalelaws.hparams.scaling): NON_IDENTIFIABLE when an exponent's 95% half-width exceeds
max(EXPONENT_HALF_WIDTH, |exponent|/2) (an exponent of 0 ± 0.01, e.g. B* vs N, is a result; one
known to ±0.3 is not). Predictions: EXTRAPOLATION beyond the fitted N, D, C (as a factor);
FORMS_DISAGREE when the (N, D) form's and the C form's prediction intervals do not overlap.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core.checks import extrapolation
from scalelaws.core.diagnostics import CODES as SHARED_CODES
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.hparams.law import compute, num

CODES: dict[str, str] = {
    k: SHARED_CODES[k]
    for k in (
        "OPTIMUM_AT_EDGE",
        "NOT_CONVEX",
        "FEW_GRID_VALUES",
        "FORMS_DISAGREE",
        "BOOTSTRAP_FAILED",
        "MISFIT",
        "NON_IDENTIFIABLE",
        "ROBUST_DISAGREES",
        "TOO_FEW_POINTS",
        "FIT_SKIPPED",
        "EXTRAPOLATION",
        "NO_INTERVAL",
    )
}
MISFIT_RATIO = 3.0
MISFIT_FLOOR = 0.001  # 0.1% of the loss: below that a misfit does not move the optimum
BOOT_FAILED_SHARE = 0.1
EXPONENT_HALF_WIDTH = 0.1
AXES = {"lr": ("learning rates", "LR", "lr"), "batch": ("batch sizes", "batch size", "batch")}


def cell_diagnostics(cell: dict) -> tuple[Diagnostic, ...]:
    """The diagnostics of one cell's surface (module doc)."""
    out, label = [], cell["label"]
    if cell["lr_status"] == "not_convex" or cell["batch_status"] == "not_convex":
        axes = [a for a in ("lr", "batch") if cell[f"{a}_status"] == "not_convex"]
        out.append(
            Diagnostic(
                "NOT_CONVEX",
                "warning",
                f"{label}: the fitted loss surface over ln {' and ln '.join(axes)} has no "
                f"minimum (Hessian not positive definite); reported at the best run (lr "
                f"{cell['best']['lr']:.4g}, batch {cell['best']['batch']:.4g}) and left out of "
                "the laws",
                "add LRs / batch sizes around the best run, and check for half-diverged runs",
                label,
            )
        )
    for axis in ("lr", "batch"):
        status = cell[f"{axis}_status"]
        if status == "edge":
            out.append(_edge(cell, axis))
        elif status == "few_values":
            out.append(_few(cell, axis))
    if cell["n_boot"] and cell["boot_failed"] > BOOT_FAILED_SHARE * cell["n_boot"]:
        out.append(
            Diagnostic(
                "BOOTSTRAP_FAILED",
                "warning",
                f"{label}: {cell['boot_failed']} of {cell['n_boot']} resamples had no minimum; "
                "the interval of its optimum rests on the others",
                "add runs around the optimum so the surface's curvature is pinned down",
                label,
            )
        )
    located = [cell[f"{a}_status"] in ("stationary", "conditional") for a in ("lr", "batch")]
    if cell["n_boot"] == 0 and cell["mode"] != "none" and any(located):
        out.append(
            Diagnostic(
                "NO_INTERVAL",
                "info",
                f"{label}: no bootstrap interval for its optimum (n_boot = 0, or as many "
                "coefficients as points)",
                "fit with n_boot >= 20 and more runs per cell",
                label,
            )
        )
    return tuple(out) + _misfit(cell)


def _edge(cell: dict, axis: str) -> Diagnostic:
    name, short, key = AXES[axis]
    lo, hi = np.exp(cell["range"][axis])
    s = num(cell["stationary"][axis])
    if np.isfinite(s) and s > hi:
        where = f"{s / hi:.3g}x above the largest {short} {hi:.4g}"
    elif np.isfinite(s) and s < lo:
        where = f"{lo / s:.3g}x below the smallest {short} {lo:.4g}"
    else:
        where = f"outside the swept {name} [{lo:.4g}, {hi:.4g}]"
    sym = "lr*" if axis == "lr" else "B*"
    return Diagnostic(
        "OPTIMUM_AT_EDGE",
        "warning",
        f"{cell['label']}: the fitted {sym} = {s:.4g} is {where}: not reported; the cell gives "
        f"its best run's {short} {cell[f'{key}_opt']:.4g} and is left out of the {sym} laws",
        f"extend this cell's sweep past that edge ({name})",
        cell["label"],
    )


def _few(cell: dict, axis: str) -> Diagnostic:
    name, short, key = AXES[axis]
    k = cell[f"n_{axis}"]
    sym = "lr*" if axis == "lr" else "B*"
    other = "the LR axis" if axis == "batch" else "the batch-size axis"
    fitted = f"{other} is fitted alone; " if cell["mode"] in ("lr", "batch") else ""
    return Diagnostic(
        "FEW_GRID_VALUES",
        "warning" if axis == "lr" else "info",
        f"{cell['label']}: {k} distinct {name} ("
        + ("a quadratic needs 3" if k < 3 else "not spread over a 2-D grid with the LRs")
        + f"): {fitted}{sym} = "
        f"{cell[f'{key}_opt']:.4g} is the best {short} swept, not an optimum, and the cell is "
        f"left out of the {sym} laws",
        f"sweep >= 3 {name} in this cell to locate {sym}",
        cell["label"],
    )


def _misfit(cell: dict) -> tuple[Diagnostic, ...]:
    sd = cell.get("seed_sd")
    if sd is None or not np.isfinite(num(sd)) or cell["mode"] == "none":
        return ()
    k = float(np.mean(cell["seeds"]))
    noise = num(sd) / np.sqrt(k)
    limit = max(MISFIT_RATIO * noise, MISFIT_FLOOR * abs(cell["best"]["loss"]))
    if cell["rmse"] <= limit:
        return ()
    return (
        Diagnostic(
            "MISFIT",
            "warning",
            f"{cell['label']}: the quadratic misses the point means by RMS {cell['rmse']:.3g} "
            f"nats, above {limit:.3g} (3x the seeds' scatter of a mean, {noise:.2g}): the loss "
            "is not quadratic in (ln lr, ln batch) over this grid",
            "fit a narrower grid around the best run, or drop runs far from the optimum",
            cell["label"],
        ),
    )


def exponent_checks(key: str, fit: dict) -> tuple[Diagnostic, ...]:
    """NON_IDENTIFIABLE for each exponent of a law known only to a wide interval."""
    out = []
    for var, e in fit["exponents"].items():
        lo, hi = fit["exponent_intervals"][var]
        half = (hi - lo) / 2
        if np.isfinite(half) and half <= max(EXPONENT_HALF_WIDTH, abs(e) / 2):
            continue
        out.append(
            Diagnostic(
                "NON_IDENTIFIABLE",
                "warning",
                f"{key}: the {var} exponent {e:.3g} has the 95% interval [{lo:.3g}, {hi:.3g}] "
                f"over {fit['n']} cells: not a result",
                "add cells over a wider range of N and D",
                f"{key}.{var}",
            )
        )
    return tuple(out)


def prediction_checks(laws: dict, n: float, d: float) -> tuple[Diagnostic, ...]:
    """EXTRAPOLATION of N, D and C beyond the cells the given laws were fitted on."""
    ranges = {"N": [], "D": [], "C": []}
    for fit in laws:
        for k in ranges:
            ranges[k] += fit["range"][k]
    value = {"N": n, "D": d, "C": float(compute(n, d))}
    names = {"N": "params N", "D": "tokens D", "C": "compute C = 6ND"}
    out = []
    for k, vals in ranges.items():
        if vals:
            out += extrapolation(
                names[k],
                value[k],
                min(vals),
                max(vals),
                action="read the prediction as an extrapolation; check it with one sweep there",
            )
    return tuple(out)


def forms_disagree(target: str, nd: tuple, c: tuple, level: float) -> tuple[Diagnostic, ...]:
    """FORMS_DISAGREE when the (N, D) form's and the C form's intervals do not overlap."""
    (p1, lo1, hi1), (p2, lo2, hi2) = nd, c
    if lo1 <= hi2 and lo2 <= hi1:
        return ()
    sym = "lr*" if target == "lr" else "B*"
    return (
        Diagnostic(
            "FORMS_DISAGREE",
            "warning",
            f"{sym}: the (N, D) form predicts {p1:.4g} [{lo1:.4g}, {hi1:.4g}] and the compute "
            f"form {p2:.4g} [{lo2:.4g}, {hi2:.4g}] ({100 * level:.0f}% intervals): they do not "
            "overlap, so how N and D trade off matters here and C alone does not capture it",
            "trust the (N, D) form if its exponents are identified; add cells near this N, D",
            target,
        ),
    )
