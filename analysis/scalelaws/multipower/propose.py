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

from scalelaws.core.fitting import FitResult
from scalelaws.core.progress import Progress, for_task
from scalelaws.multipower.checks import check_params, proposal_diagnostics
from scalelaws.multipower.law import MPL_PARAMS
from scalelaws.multipower.schedule import (
    ScheduleProposal,
    baseline_lr,
    final_loss,
    optimise_schedule,
)


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
    lr_floor: float | None = None,
    max_log_drop: float | None = None,
    constrained: bool = True,
    progress: Progress | None = None,
) -> ScheduleProposal:
    """The monotone schedule (warmup included) with the lowest predicted final loss, among the
    schedules the fitting curves vouch for (docs/laws.md §1.6).

    fit: a multipower fit (result, FIT.json path, or its params). floor: final LR of the cosine
    and WSD baselines (peak/10). smooth: stop at the knot stage (the per-step optimum of the
    MPL is a few-step staircase). With `constrained` (default) and a fit that records its range
    (info["fit_range"]), the schedule stays >= the lowest post-warmup LR of the fitting curves
    (`lr_floor`) and its log LR drops by at most the steepest one-step drop seen in them
    (`max_log_drop`); give either to override. With the fit's bootstrap refits, `intervals`
    gives the 95% range of each schedule's predicted final loss. progress: progress(done, 3)
    per optimisation stage (scalelaws.core.progress).
    """
    res, source = _as_fit(fit)
    check_params(res.params, MPL_PARAMS)
    rng = res.info.get("fit_range") or {}
    lo, drop, how = _constraints(rng, peak_lr, lr_floor, max_log_drop, constrained)
    prop = optimise_schedule(
        res.params,
        total_steps,
        warmup_steps,
        peak_lr,
        floor=floor,
        knots=knots,
        per_step=not smooth,
        maxiter=maxiter,
        lr_floor=lo,
        max_log_drop=drop,
        progress=for_task(progress, "schedule optimisation"),
    )
    samples = list(res.info.get("bootstrap_params") or [])
    intervals = _intervals(prop, samples) if samples else {}
    prop = dataclasses.replace(
        prop,
        intervals=intervals,
        fit=source,
        fit_input_hash=res.input_hash,
        info=dict(prop.info, n_bootstrap=len(samples), constraints=how),
    )
    return dataclasses.replace(prop, diagnostics=proposal_diagnostics(res, prop, len(samples)))


def _constraints(rng, peak_lr, lr_floor, max_log_drop, constrained):
    """(LR floor, max one-step log drop, description) of the search (docs/laws.md §1.6)."""
    for name, v in (("lr_floor", lr_floor), ("max_log_drop", max_log_drop)):
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name}={v}: must be a finite number >= 0")
    lo = lr_floor
    if lo is None:
        lo = float(rng["min_lr"]) if constrained and rng.get("min_lr") is not None else 0.0
    lo = min(lo, peak_lr * (1 - 1e-9))  # a fit that never decayed below this peak: no decay
    drop = max_log_drop
    if drop is None and constrained and rng.get("max_log_drop") is not None:
        drop = max(float(rng["max_log_drop"]), 1e-12)
    source = "given" if (lr_floor, max_log_drop) != (None, None) else "fit" if rng else "none"
    if not constrained:
        source = "none" if (lr_floor, max_log_drop) == (None, None) else "given"
    return lo, drop, {"lr_floor": lo, "max_log_drop": drop, "source": source}


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
    """95% percentile range of each schedule's predicted final loss over the bootstrap refits
    (refits over whole curves: scalelaws.core.fitting.bootstrap)."""
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
