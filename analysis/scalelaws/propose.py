"""Proposals under a fitted law: the LR schedule that minimises the multi-power law's predicted
final loss (Luo et al. 2025, arXiv 2503.12811; docs/laws.md §1 "Schedule optimisation").

    prop = propose_schedule(fit, total_steps=1000, peak_lr=3e-3, warmup_steps=50)
    prop.lr, prop.predicted_final_loss, prop.interval, prop.baselines["wsd"]["params"]

Turning a proposal into the next sweep is the platform's job: `ScheduleSpec("array", W,
{"values": prop.lr})`, or `ScheduleSpec("wsd", W, prop.baselines["wsd"]["params"])`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scalelaws.diagnostics import Diagnostic
from scalelaws.fitting import FitResult
from scalelaws.progress import Progress, for_task
from scalelaws.schedule import ScheduleProposal, baseline_lr, final_loss, optimise_schedule


def propose_schedule(
    fit: FitResult | Mapping[str, float] | str | Path,
    total_steps: int,
    peak_lr: float,
    *,
    warmup_steps: int = 0,
    floor: float | None = None,
    knots: int = 200,
    smooth: bool = False,
    maxiter: int = 3000,
    progress: Progress | None = None,
) -> ScheduleProposal:
    """The monotone schedule (warmup included) with the lowest predicted final loss.

    fit: a multipower fit (result, FIT.json path, or its params). floor: final LR of the cosine
    and WSD baselines (peak/10). smooth: stop at the knot stage (the per-step optimum of the
    MPL is a few-step staircase). With the fit's bootstrap refits, `intervals` gives the 95%
    range of each schedule's predicted final loss. progress: progress(done, 3) per optimisation
    stage (scalelaws.progress).
    """
    res, source = _as_fit(fit)
    prop = optimise_schedule(
        res.params,
        total_steps,
        warmup_steps,
        peak_lr,
        floor=floor,
        knots=knots,
        per_step=not smooth,
        maxiter=maxiter,
        progress=for_task(progress, "schedule optimisation"),
    )
    samples = list(res.info.get("bootstrap_params") or [])
    intervals = _intervals(prop, samples) if samples else {}
    return dataclasses.replace(
        prop,
        intervals=intervals,
        diagnostics=_diagnostics(res, prop, bool(samples)),
        fit=source,
        fit_input_hash=res.input_hash,
        info=dict(prop.info, n_bootstrap=len(samples)),
    )


def _as_fit(fit) -> tuple[FitResult, str]:
    if isinstance(fit, str | Path):
        return FitResult.load(fit), str(fit)
    if isinstance(fit, FitResult):
        res = fit
    elif isinstance(fit, Mapping):
        res = FitResult(law="multipower", params=dict(fit))
    else:
        raise ValueError(f"fit: give a FitResult, a FIT.json path or params, not {type(fit)}")
    if res.law != "multipower":
        raise ValueError(f"fit: needs a multipower fit, got law {res.law!r}; fit law='multipower'")
    return res, ""


def _intervals(prop: ScheduleProposal, samples: list[dict]) -> dict[str, tuple[float, float]]:
    """95% percentile range of each schedule's predicted final loss over the bootstrap refits."""
    lrs = {"proposed": prop.lr} | {
        k: baseline_lr(b, prop.total_steps, prop.warmup_steps, prop.peak_lr)
        for k, b in prop.baselines.items()
    }
    out = {}
    for name, lr in lrs.items():
        vals = np.array([final_loss(p, lr) for p in samples])
        lo, hi = np.percentile(vals, [2.5, 97.5])
        out[name] = (float(lo), float(hi))
    return out


def _diagnostics(res: FitResult, prop: ScheduleProposal, has_boot: bool) -> tuple:
    out = []
    if not has_boot:
        out.append(
            Diagnostic(
                "NO_INTERVAL",
                "info",
                "the fit has no bootstrap refits: no interval on the predicted losses",
                "fit with n_boot > 0 (the CLI's --bootstrap)",
            )
        )
    peak, longest = res.info.get("peak_lr"), res.info.get("max_step")
    if peak and prop.peak_lr > peak * (1 + 1e-6):
        out.append(
            Diagnostic(
                "EXTRAPOLATION",
                "warning",
                f"peak_lr {prop.peak_lr:g} is above the fitted curves' peak {peak:g}",
                "fit on curves that reach this LR",
                "peak_lr",
            )
        )
    if longest and prop.total_steps > longest:
        out.append(
            Diagnostic(
                "EXTRAPOLATION",
                "info",
                f"{prop.total_steps} steps is {prop.total_steps / longest:.2g}x the longest "
                f"fitted curve ({longest} steps)",
                "check the prediction with one run of this length",
                "total_steps",
            )
        )
    return tuple(out)
