"""Closed loops: a proposal was run (its validation study); compare predicted with measured.

    prop = ScheduleProposal.load("results/schedules/proposed_schedule.json")
    check = load_study(find_validation("results/schedules"))
    predicted_vs_measured(prop, check.runs)

A validation study runs the proposed schedule (registry name `array`) next to the proposal's
baselines (`cosine`, `wsd`) for the same budget (experiments/schedules.py). Its folder is
`<study>_validate` beside the study, or `validate/` inside it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from scalelaws.multipower.schedule import ScheduleProposal
from scalelaws.study.load import has_tables

NAMES = {"array": "proposed", "cosine": "cosine", "wsd": "wsd"}  # registry name -> proposal


def find_validation(root: str | Path) -> Path | None:
    """The validation study of the study in `root` (collected tables), or None."""
    root = Path(root)
    for cand in (root.parent / f"{root.name}_validate", root / "validate"):
        if has_tables(cand):
            return cand
    return None


def predicted_vs_measured(
    proposal: ScheduleProposal | str | Path, runs: pl.DataFrame, loss: str = "final_eval_loss"
) -> pl.DataFrame:
    """One row per schedule of the proposal that the runs measured: schedule (proposed, cosine,
    wsd), predicted (final loss), lo/hi (its 95% interval when the fit had a bootstrap),
    measured (mean of `loss` over the completed runs of that schedule and budget), std, n."""
    prop = proposal if isinstance(proposal, ScheduleProposal) else ScheduleProposal.load(proposal)
    predicted = {"proposed": prop.predicted_final_loss} | {
        k: b["predicted_final_loss"] for k, b in prop.baselines.items()
    }
    done = runs.filter((pl.col("status") == "completed") & pl.col(loss).is_not_null())
    if "total_steps" in done.columns:
        done = done.filter(pl.col("total_steps") == prop.total_steps)
    rows = []
    for name, label in NAMES.items():
        vals = done.filter(pl.col("schedule") == name)[loss]
        if label not in predicted or vals.len() == 0:
            continue
        lo, hi = prop.intervals.get(label, (None, None))
        std = vals.std() if vals.len() > 1 else None
        rows.append(
            {
                "schedule": label,
                "predicted": float(predicted[label]),
                "lo": lo,
                "hi": hi,
                "measured": float(vals.mean()),
                "std": std,
                "n": vals.len(),
            }
        )
    schema = {"schedule": pl.String, "predicted": pl.Float64, "lo": pl.Float64}
    schema |= {"hi": pl.Float64, "measured": pl.Float64, "std": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema).sort("measured")
