"""Diagnostics of the knowledge-capacity fits (docs/laws.md §3; Allen-Zhu & Li 2024,
arXiv 2404.05405).

- NEGATIVE_BITS: a trial whose fp32 bits are <= 0 predicts its facts no better than a uniform
  guess (undertrained or broken); it is left out of every R fit.
- RETENTION_UNDEFINED: the share of bits a quantized copy keeps is undefined (fp32 bits <= 0)
  or absurd (> RETENTION_MAX: a rounded copy cannot hold more knowledge than the original
  beyond noise); the share is then reported as None, never as a percentage.
- TOO_FEW_POINTS: R from fewer than 4 capacity-bound trials (a one-parameter fit through the
  origin: shown, with this warning).
- ROBUST_DISAGREES: a Huber fit through the origin (statsmodels RLM; the robust estimation of
  Hoffmann et al. 2022 and Besiroglu et al. 2024) is more than a quarter of the OLS 95%
  interval (about one standard error) away from the OLS R.
"""

from __future__ import annotations

import numpy as np

from scalelaws.core import checks
from scalelaws.core.diagnostics import Diagnostic

RETENTION_MAX = 1.05


def retention(quantized_bits: float, bits: float) -> float | None:
    """quantized / fp32 bits, or None when undefined (bits <= 0) or absurd (> RETENTION_MAX)."""
    if not bits > 0:
        return None
    share = quantized_bits / bits
    return share if share <= RETENTION_MAX else None


def trial_diagnostics(trials) -> tuple[Diagnostic, ...]:
    out = []
    for t in trials:
        if not t["bits"] > 0:
            out.append(
                Diagnostic(
                    "NEGATIVE_BITS",
                    "warning",
                    f"{t['bits']:.4g} bits (p1 {t['p1']:.3g}, p2 {t['p2']:.3g} nats): it predicts "
                    "its facts no better than a uniform guess; left out of R",
                    "train it longer (more exposures) or check the run",
                    t["name"],
                )
            )
        for q in ("int8", "int4"):
            if f"bits_{q}" in t and t.get(f"retained_{q}") is None:
                out.append(
                    Diagnostic(
                        "RETENTION_UNDEFINED",
                        "warning",
                        f"{q} copy: {t[f'bits_{q}']:.4g} bits vs {t['bits']:.4g} fp32 bits: no "
                        "meaningful share of bits kept",
                        "read the bits, not the share; train the model to capacity first",
                        t["name"],
                    )
                )
    return tuple(out)


def group_diagnostics(group: dict, sel: list[dict]) -> tuple[Diagnostic, ...]:
    """TOO_FEW_POINTS and ROBUST_DISAGREES for one exposure count's R fit."""
    if group.get("estimate") is None:
        return ()
    where = f"{group['exposures']:g} exposures"
    out = []
    n = group["n_bound"]
    if n < checks.MIN_SCALING_POINTS:
        out.append(
            Diagnostic(
                "TOO_FEW_POINTS",
                "warning",
                f"R rests on {n} capacity-bound trials (< {checks.MIN_SCALING_POINTS})",
                "train more models below capacity (smaller models or more people)",
                where,
            )
        )
    bound = [t for t in sel if t["name"] in set(group["bound_trials"])]
    if len(bound) >= 3:
        import statsmodels.api as sm

        p = np.array([t["params"] for t in bound], float)
        y = np.array([t["bits"] for t in bound], float)
        huber = float(sm.RLM(y, p, M=sm.robust.norms.HuberT()).fit().params[0])
        lo, hi = group["interval"]
        if abs(huber - group["estimate"]) > (hi - lo) / 4:  # about one standard error
            out.append(
                Diagnostic(
                    "ROBUST_DISAGREES",
                    "warning",
                    f"Huber R = {huber:.3g} vs OLS {group['estimate']:.3g} (95% [{lo:.3g}, "
                    f"{hi:.3g}]): more than one standard error apart",
                    "one trial drives R: look at the per-trial ratios",
                    where,
                )
            )
    return tuple(out)
