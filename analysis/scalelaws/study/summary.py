"""A study at a glance, read from its tables (no fitting): status counts, grid keys, runs table.

    study = load_study("results/quickstart")
    status_counts(study)   # {"completed": 8}
    grid_keys(study)       # ["model.size", "schedule"]
    runs_table(study)      # trial, grid.model.size, grid.schedule, status, final and best losses
    shared_prefixes(study.runs)  # what forking from shared prefixes saved, and the tree

Grid keys are the study's own (`grid.<key>` columns; a structured value such as a schedule is
one key, its label in `grid.<key>`). Tables written before the grid columns existed fall back
to the runs columns among `FALLBACK_KEYS` that vary.
"""

from __future__ import annotations

import polars as pl

from scalelaws.study.load import Study

STATES = ("completed", "diverged", "stopped", "failed", "running", "pending")
LOSSES = ("final_eval_loss", "best_eval_loss", "final_train_loss")
FALLBACK_KEYS = ("model", "batch_size", "lr", "schedule", "tokens", "seed", "data")


def top_grid_columns(columns: list[str]) -> list[str]:
    """The `grid.<key>` columns of the grid keys themselves, not the fields of a structured
    value: `grid.schedule`, not `grid.schedule.name`."""
    cols = [c for c in columns if c.startswith("grid.")]
    return [c for c in cols if not any(c.startswith(o + ".") for o in cols)]


def grid_keys(study: Study) -> list[str]:
    """The study's grid keys, e.g. ["model.size", "schedule"] (without the `grid.` prefix)."""
    if study.grid_columns:
        return [c.removeprefix("grid.") for c in top_grid_columns(study.grid_columns)]
    runs = study.runs
    return [c for c in FALLBACK_KEYS if c in runs.columns and runs[c].n_unique() > 1]


def key_column(study: Study, key: str) -> str:
    """The runs/curves column holding grid key `key` (`grid.<key>`, or `key` in old tables)."""
    col = f"grid.{key}"
    return col if col in study.runs.columns else key


def is_numeric(frame: pl.DataFrame, column: str) -> bool:
    return frame.schema[column].is_numeric()


def status_counts(study: Study) -> dict[str, int]:
    """{status: trials}, in the order of STATES (then any other status), zero counts left out."""
    counts = dict(study.runs.group_by("status").len().iter_rows())
    order = [s for s in STATES if s in counts] + sorted(set(counts) - set(STATES))
    return {s: int(counts[s]) for s in order}


def runs_table(study: Study) -> pl.DataFrame:
    """One row per trial: trial, its grid-key columns, status, steps_done, the final and best
    losses and wall_s (the columns the table has), sorted by the grid keys then the trial."""
    runs = study.runs
    keys = [key_column(study, k) for k in grid_keys(study)]
    extra = [c for c in ("status", "steps_done", *LOSSES, "wall_s") if c in runs.columns]
    cols = ["trial", *[k for k in keys if k != "trial"], *[c for c in extra if c not in keys]]
    return runs.select(cols).sort([*keys, "trial"], nulls_last=True)


def shared_prefixes(runs: pl.DataFrame) -> tuple[str, pl.DataFrame] | None:
    """Trials that started from another trial's checkpoint (scalelab's shared prefixes): a line
    with the updates trained against the updates the same trials would train from scratch
    (their steps_done), and the tree, one row per forked trial (trunk, fork step, trial, the
    updates it trained itself). None when no trial forked."""
    if "fork_step" not in runs.columns or runs["fork_step"].is_null().all():
        return None
    steps = runs["steps_done"].fill_null(0)
    own = (steps - runs["fork_step"].fill_null(0)).clip(lower_bound=0)
    trained, full = int(own.sum()), int(steps.sum())
    tree = (
        runs.with_columns(own_steps=own)
        .filter(pl.col("fork_step").is_not_null())
        .select("forked_from", "fork_step", "trial", "own_steps")
        .sort("forked_from", "fork_step", "trial")
    )
    trunks = tree["forked_from"].n_unique()
    line = (
        f"shared prefixes: trained {trained:,} of {full:,} trial steps "
        f"({trained / max(full, 1):.0%}); {tree.height} fork{'s' * (tree.height != 1)}, "
        f"{trunks} trunk{'s' * (trunks != 1)}"
    )
    return line, tree
