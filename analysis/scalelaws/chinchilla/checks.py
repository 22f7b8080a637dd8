"""Diagnostics of the Chinchilla fits (codes registered, with their meaning and action, in
scalelaws.core.diagnostics.CODES): the loss surface's (approach 3), an isoFLOP slice's
(approach 2), and whether two estimates disagree (docs/laws.md §4)."""

from __future__ import annotations

import numpy as np

from scalelaws.chinchilla.law import LAW_PARAMS, PARAMS, terms
from scalelaws.core.diagnostics import CODES as SHARED_CODES
from scalelaws.core.diagnostics import Diagnostic

# Diagnostic codes of the Chinchilla package (registered, with their meaning and action, in
# the shared scalelaws.core.diagnostics.CODES).
CODES: dict[str, str] = {
    k: SHARED_CODES[k]
    for k in (
        "PARAM_AT_BOUND",
        "NON_IDENTIFIABLE",
        "TERM_FLAT",
        "BOOTSTRAP_FAILURES",
        "NO_INTERVAL",
        "OPTIMUM_OUTSIDE_SLICE",
        "SLICE_SKIPPED",
        "OPTIMUM_NOT_BRACKETED",
        "NOPT_SCATTER",
        "E_IMPLAUSIBLE",
        "SLICE_SPREAD",
        "APPROACHES_DISAGREE",
        "COMPUTE_CONVENTION_MISMATCH",
        "EXTRAPOLATION",
    )
}


def wide_interval(
    name: str, value: float, lo, hi, action: str = "add runs", subject: str | None = None
) -> list[Diagnostic]:
    """NON_IDENTIFIABLE when the 95% interval (lo, hi) is wider than |value|."""
    lo, hi = (float("nan") if v is None else float(v) for v in (lo, hi))
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= abs(value):
        return []
    msg = f"{name} = {value:.4g} but its 95% interval ({lo:.4g}, {hi:.4g}) is wider than it"
    return [Diagnostic("NON_IDENTIFIABLE", "warning", msg, action, subject or name)]


def surface_checks(theta, params, intervals, n_boot, failed, x, yhat) -> list[Diagnostic]:
    """Approach 3: TERM_FLAT, PARAM_AT_BOUND, NON_IDENTIFIABLE, NO_INTERVAL, BOOTSTRAP_FAILURES."""
    diags = []
    for name, term, what in zip(("alpha", "beta"), terms(theta, x), "ND", strict=False):
        spread = float(np.ptp(term))
        if spread < 0.01 * float(np.mean(yhat)):
            diags.append(
                Diagnostic(
                    "TERM_FLAT",
                    "warning",
                    f"the {what} term varies by {spread:.3g} over the runs, < 1% of the loss: "
                    f"the fit found no {what} dependence to use",
                    f"vary {what} over a wider range, or check the runs",
                    name,
                )
            )
    for p, v in zip(LAW_PARAMS, theta, strict=True):
        tol = 1e-4 * (p.hi - p.lo)  # L-BFGS-B stops short of a bound on a flat direction
        if v <= p.lo + tol or v >= p.hi - tol:
            side = "lower" if v <= p.lo + tol else "upper"
            diags.append(
                Diagnostic(
                    "PARAM_AT_BOUND",
                    "warning",
                    f"{p.name} = {v:.4g} is at its {side} bound [{p.lo}, {p.hi}]",
                    "the data do not constrain it: add runs that vary N and D more widely",
                    p.name,
                )
            )
    for name in PARAMS:
        lo, hi = intervals.get(name, (np.nan, np.nan))
        diags += wide_interval(name, params[name], lo, hi, "read n_exponent and G, or add runs")
    if n_boot == 0:
        diags.append(
            Diagnostic("NO_INTERVAL", "info", "n_boot = 0: no intervals", "pass n_boot >= 200", "")
        )
    elif failed:
        diags.append(
            Diagnostic(
                "BOOTSTRAP_FAILURES",
                "warning" if failed > 0.05 * n_boot else "info",
                f"{failed} of {n_boot} bootstrap refits did not converge and were skipped",
                "intervals use the rest; many failures mean a poorly constrained fit",
            )
        )
    return diags


def floor_checks(e, e_iv, floor, min_loss, fix_e=None) -> list[Diagnostic]:
    """Approach 3's E against what is known: E_IMPLAUSIBLE when E (and its whole interval) is
    below the supplied floor, or when E is above the lowest measured loss (every run's loss is
    E plus two positive terms)."""
    diags = []
    hi = e_iv[1] if e_iv else e
    if floor is not None and e < floor and fix_e is None:
        sure = "and so is its whole 95% interval" if hi < floor else "(its interval reaches it)"
        diags.append(Diagnostic(
            "E_IMPLAUSIBLE", "warning" if hi < floor else "info",
            f"the fitted E = {e:.4g} is below the supplied floor {floor:.4g} {sure}: the fit "
            "puts loss the data cannot reach in the N and D terms",
            f"fix E at the floor (fix_e={floor:.4g}) or add runs at larger N and D", "E",
        ))  # fmt: skip
    if e > min_loss:
        diags.append(Diagnostic(
            "E_IMPLAUSIBLE", "warning",
            f"the fitted E = {e:.4g} is above the lowest measured loss {min_loss:.4g}, which "
            "L = E + A/N^alpha + B/D^beta cannot produce", "fix E at a known floor, or check "
            "the lowest-loss runs", "E",
        ))  # fmt: skip
    return diags


def disjoint(a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float):
    """True/False when intervals (or a point and an interval) do not/do overlap; None when
    neither side has an interval. None bounds (NaN after a JSON round trip) count as NaN."""
    a_lo, a_hi, b_lo, b_hi = (np.nan if v is None else v for v in (a_lo, a_hi, b_lo, b_hi))
    has_a, has_b = np.isfinite(a_lo) and np.isfinite(a_hi), np.isfinite(b_lo) and np.isfinite(b_hi)
    if has_a and has_b:
        return bool(a_hi < b_lo or b_hi < a_lo)
    if has_a:
        return bool(not a_lo <= b <= a_hi)
    if has_b:
        return bool(not b_lo <= a <= b_hi)
    return None


def slice_checks(where: str, label: str, n, flops, n_opt: float, has_interval: bool):
    """Approach 2, one isoFLOP slice: NO_INTERVAL (3 points fit the parabola exactly),
    OPTIMUM_OUTSIDE_SLICE (N_opt extrapolated), SLICE_SPREAD (runs of different budgets)."""
    diags = []
    if not has_interval:
        diags.append(
            Diagnostic(
                "NO_INTERVAL",
                "info",
                f"{where}: 3 points fit the parabola exactly, so N_opt has no interval",
                "add a fourth model size at this budget",
                label,
            )
        )
    if not n.min() <= n_opt <= n.max():
        diags.append(
            Diagnostic(
                "OPTIMUM_OUTSIDE_SLICE",
                "warning",
                f"{where}: N_opt = {n_opt:.3g} lies outside the slice's N range "
                f"[{n.min():.3g}, {n.max():.3g}] (extrapolated)",
                "add runs beyond that end of the slice, or drop it",
                label,
            )
        )
    if flops.max() / flops.min() > 1.5:
        diags.append(
            Diagnostic(
                "SLICE_SPREAD",
                "warning",
                f"{where}: its runs span {flops.min():.3g} to {flops.max():.3g} FLOPs",
                "group by a budget column (budget_col) or use a smaller gap_dex",
                label,
            )
        )
    return diags
