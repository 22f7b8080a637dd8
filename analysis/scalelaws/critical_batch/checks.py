"""Diagnostics of the critical-batch-size fits (docs/laws.md §2, §7) and the checked scaling
fits of CBS / B_crit in N and D.

Per group (T(B) = S_min + E_min/B, Zhang et al. 2025, arXiv 2410.21676):
- PARAM_AT_BOUND: S_min = 0 (T(B) never flattens over the batch sizes: B_crit = CBS = ∞) or
  E_min = 0 (T(B) is flat);
- MISFIT: RMS log residual > MISFIT_RMS (1.5 × the ~10% that the eval grid and the LR grid
  leave in a measured T(B); the published Zhang et al. fits reach 0.055) or any residual
  beyond MISFIT_MAX (a factor 1.42);
- NON_IDENTIFIABLE: the bootstrap interval of B_crit is wider than B_crit, or unbounded.

Scaling fits (OLS on logs, scalelaws.core.powerlaw): fewer than 4 groups is refused unless `force`
(TOO_FEW_POINTS); exponents whose 95% interval is wider than themselves are NON_IDENTIFIABLE;
a Huber fit and a bootstrap over groups cross-check OLS (ROBUST_DISAGREES) — the robust
estimation of Hoffmann et al. 2022 and Besiroglu et al. 2024, as a check beside the OLS that
Zhang et al. report.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core import checks
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.powerlaw import cross_check, fit_joint_power_law, fit_power_law

MISFIT_RMS = 0.15
MISFIT_MAX = 0.35


def group_diagnostics(f) -> tuple[Diagnostic, ...]:
    """Diagnostics of one group's T(B) fit (a batchsize.CBSFit)."""
    out = []
    span = f"B = {min(f.batch_sizes):g}..{max(f.batch_sizes):g}"
    if f.s_min <= 0:
        out.append(
            Diagnostic(
                "PARAM_AT_BOUND",
                "warning",
                f"S_min = 0: T(B) never flattens over {span}, so B_crit and CBS are infinite "
                "(unmeasured, not large)",
                "add batch sizes past the point where doubling B stops halving the steps",
                f"s_min[{f.group}]",
            )
        )
    if f.e_min <= 0:
        out.append(
            Diagnostic(
                "PARAM_AT_BOUND",
                "warning",
                f"E_min = 0: T(B) does not fall with B over {span} (B_crit = 0)",
                "add smaller batch sizes, or check the steps (optimizer steps, not tokens)",
                f"e_min[{f.group}]",
            )
        )
    r = np.asarray(f.residuals, float)
    rms, worst = float(np.sqrt(np.mean(r**2))), float(np.max(np.abs(r)))
    if rms > MISFIT_RMS or worst > MISFIT_MAX:
        out.append(
            Diagnostic(
                "MISFIT",
                "warning",
                f"T(B) = S_min + E_min/B misses the steps by RMS {rms:.3g} in log T (worst "
                f"{worst:.3g}, a factor {np.exp(worst):.2g}); measured T(B) scatter ~0.1",
                "check steps_to_target (optimizer steps to the target) and the batch sizes",
                f"{f.group}",
            )
        )
    lo, hi = f.b_crit_interval
    if np.isfinite(f.b_crit) and f.b_crit > 0 and (not np.isfinite(hi) or hi - lo > f.b_crit):
        out.append(
            Diagnostic(
                "NON_IDENTIFIABLE",
                "warning",
                f"B_crit = {f.b_crit:.4g} but its 95% interval ({lo:.4g}, {hi:.4g}) is wider",
                "add batch sizes around B_crit",
                f"b_crit[{f.group}]",
            )
        )
    return tuple(out)


def scaling(fits, quantity: str, n_unit: float, d_unit: float, force: bool = False):
    """Power laws of `quantity` vs N, D and jointly; returns ({key: law}, diagnostics)."""
    y = np.array([getattr(f, quantity) for f in fits], float)
    n = np.array([np.nan if f.params is None else f.params for f in fits], float)
    d = np.array([np.nan if f.tokens is None else f.tokens for f in fits], float)
    at_bound = np.array([f.s_min <= 0 or f.e_min <= 0 for f in fits], bool)
    ok_y = np.isfinite(y) & (y > 0) & ~at_bound  # a fit at a bound measured no CBS
    out, diags = {}, []
    dropped = [f.group for f, ok in zip(fits, ok_y, strict=True) if not ok]
    if dropped and len(fits) > 1:
        msg = (
            f"{quantity} scaling leaves out {len(dropped)} group(s) whose T(B) fit is at a bound: "
        )
        diags.append(
            Diagnostic(
                "FIT_SKIPPED",
                "warning",
                msg + ", ".join(dropped),
                "fix those groups' T(B) fits first (see their diagnostics)",
                quantity,
            )
        )
    for key, x, unit in (("params", n, n_unit), ("tokens", d, d_unit)):
        m = ok_y & np.isfinite(x)
        if np.unique(x[m]).size < 2:
            continue  # this variable does not vary: nothing to fit
        law, more = _checked(f"{quantity} vs {key}", x[m], y[m], unit, force)
        diags += more
        if law is not None:
            out[key] = law
    if "params" in out and "tokens" in out:
        law, more = _joint(quantity, n, d, y, ok_y, n_unit, d_unit, force)
        diags += more
        if law is not None:
            out["joint"] = law
    return out, tuple(diags)


def _checked(what, x, y, unit, force):
    if x.size < checks.MIN_SCALING_POINTS:
        try:
            diag = checks.too_few(x.size, what, force)
        except ValueError as e:
            return None, [Diagnostic("TOO_FEW_POINTS", "warning", f"refused: {e}", "", what)]
        if x.size < 3:
            return None, [diag]
        law = fit_power_law(x, y, x_unit=unit)
        return law, [diag, *_exponent(what, law.exponent, law.exponent_interval)]
    law = fit_power_law(x, y, x_unit=unit)
    diags = list(_exponent(what, law.exponent, law.exponent_interval))
    diags += cross_check(what, np.log(x / unit)[:, None], np.log(y), law.exponent_interval)
    return law, diags


def _joint(quantity, n, d, y, ok_y, n_unit, d_unit, force):
    what = f"{quantity} joint"
    m = ok_y & np.isfinite(n) & np.isfinite(d)
    if abs(np.corrcoef(np.log(n[m]), np.log(d[m]))[0, 1]) > 0.99:
        msg = (
            f"{what} fit c·N^a·D^b not possible: N and D vary together (|corr(log N, log D)| "
            "> 0.99); the pooled fits above each carry both"
        )
        return None, [Diagnostic("FIT_SKIPPED", "info", msg, "vary N at fixed D and D at fixed N")]
    if m.sum() < 4 and not force:
        return None, [checks.too_few(int(m.sum()), what, True)]
    law = fit_joint_power_law(n[m], d[m], y[m], n_unit, d_unit)
    diags = list(_exponent(f"{what} a", law.a, law.a_interval))
    diags += _exponent(f"{what} b", law.b, law.b_interval)
    xs = np.column_stack([np.log(n[m] / n_unit), np.log(d[m] / d_unit)])
    diags += cross_check(what, xs, np.log(y[m]), law.a_interval, law.b_interval)
    return law, diags


def _exponent(what, value, interval) -> tuple[Diagnostic, ...]:
    lo, hi = interval
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo <= abs(value):
        return ()
    return (
        Diagnostic(
            "NON_IDENTIFIABLE",
            "warning",
            f"{what}: exponent {value:.3g} with 95% interval [{lo:.3g}, {hi:.3g}], wider than "
            "the exponent: not a result",
            "add groups over a wider range of N and D",
            what,
        ),
    )


def lr_edges(steps) -> tuple[Diagnostic, ...]:
    """LR_AT_EDGE per group: batch sizes whose fewest steps came from the highest (or lowest)
    LR swept there. T(B) is a minimum over the LR sweep (Zhang et al.); with the best LR on an
    edge, a faster LR may lie beyond it, so T(B) is over-estimated there and S_min, E_min and
    the CBS move with it."""
    out = []
    if "lr_edge" not in steps.columns:
        return ()
    for group in steps["group"].unique(maintain_order=True).to_list():
        rows = steps.filter((steps["group"] == group) & steps["lr_edge"].is_not_null())
        if rows.height == 0:
            continue
        where = ", ".join(
            f"B = {b:g} ({e} LR {lr:.3g})"
            for b, e, lr in zip(rows["batch_size"], rows["lr_edge"], rows["lr"], strict=True)
        )
        out.append(
            Diagnostic(
                "LR_AT_EDGE",
                "warning",
                "the fewest steps to the target came from an edge of the LR "
                f"sweep at {where}: T(B) may be over-estimated there, and the CBS with it",
                "extend the LR sweep past that edge at those batch sizes",
                group,
            )
        )
    return tuple(out)
