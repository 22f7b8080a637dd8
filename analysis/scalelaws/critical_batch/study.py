"""The critical-batch-size study's analysis (experiments/critical_batch.py; docs/laws.md §2).

One run per (N, B, LR) at a constant LR after warmup serves every data size D: a run with a
budget of D tokens is a prefix of the longer run (Zhang et al., ICLR 2025, arXiv 2410.21676,
train at a constant LR with EWA for this reason). `cbs_tables` makes per-D copies of the
study tables, `analyse` fits them (fit_cbs) and writes the study's files:

    ROOT/cbs/{runs,curves}.parquet   the per-D tables (`scalelab fit cbs --runs ROOT/cbs`)
    ROOT/CBS.json, ROOT/cbs.png      the fit on the EWA loss (ewa_eval_loss)
    ROOT/CBS_raw.json                the same on the raw eval loss
    ROOT/CBS.md, ROOT/cbs_study.png  tables and figure
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from scalelaws.critical_batch.fit import CBSResult, fit_cbs
from scalelaws.critical_batch.report import cbs_markdown
from scalelaws.critical_batch.steps import noise_scale_at_target
from scalelaws.io import write_parquet, write_text
from scalelaws.study.load import load_study


def cbs_tables(
    runs: pl.DataFrame,
    curves: pl.DataFrame,
    data_sizes: Sequence[int],
    ref_batch: int,
    seq_len: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-D copies of the study tables.

    Copy D of run R is `R@D<D>` with tokens = D (so the group is (N, D)). A B_ref run stops at
    D tokens (its last eval there is its final loss, which sets the target) and counts as
    completed if it got that far; every other run keeps its whole curve (a run of budget
    D·m(B) would be its exact prefix, and Zhang et al. train until the target is reached).
    """
    out_r, out_c = [], []
    is_ref = pl.col("batch_size") == ref_batch
    ref = runs.filter(is_ref)["trial"].to_list()
    for dd in data_sizes:
        ref_steps = dd // (ref_batch * seq_len)
        tag = f"@D{dd}"
        ok = (pl.col("status") == "completed") | (pl.col("steps_done") > ref_steps)
        copy = runs.with_columns(
            trial=pl.col("trial") + tag,
            budget_tokens=pl.col("tokens"),
            tokens=pl.lit(dd, pl.Int64),
            status=pl.when(is_ref & ok).then(pl.lit("completed")).otherwise(pl.col("status")),
        )
        if "grid.tokens" in copy.columns:  # the copy's requested budget is D too
            copy = copy.with_columns(pl.lit(dd, pl.Int64).alias("grid.tokens"))
        out_r.append(copy)
        cut = ~pl.col("trial").is_in(ref) | (pl.col("step") <= ref_steps)
        out_c.append(curves.filter(cut).with_columns(trial=pl.col("trial") + tag))
    return pl.concat(out_r, how="diagonal_relaxed"), pl.concat(out_c)


def noise_by_batch(curves: pl.DataFrame, res: CBSResult, batch_sizes: Sequence[int]):
    """B_simple (McCandlish et al. App. A.1) at each group's target, read from every batch
    size's best run: group, trial, step, noise_scale, batch_size."""
    steps = res.steps_frame()
    return pl.concat(
        noise_scale_at_target(curves, steps, b).with_columns(batch_size=pl.lit(b))
        for b in batch_sizes
    )


def noise_median(per_b: pl.DataFrame, b_min: int) -> dict[str, float]:
    """Median B_simple per group over the runs at B >= b_min (one run's EMA is noisy, more so
    at small B)."""
    big = per_b.filter(pl.col("batch_size") >= b_min)
    return dict(big.group_by("group").agg(pl.col("noise_scale").median()).iter_rows())


def analyse(
    root: str | Path,
    trials: Sequence[str],
    *,
    data_sizes: Sequence[int],
    batch_sizes: Sequence[int],
    seq_len: int,
    noise_batch: int | None = None,
    n_boot: int = 500,
    seed: int = 0,
    plots: bool = True,
) -> CBSResult:
    """Fit the study in ROOT (only `trials`; old trial folders may linger) and write its files
    (module docstring). B_ref is the smallest batch size. Returns the EWA-loss result."""
    root = Path(root)
    ref_batch = min(batch_sizes)
    study = load_study(root)
    keep = pl.col("trial").is_in(list(trials))
    curves = study.curves.drop([c for c in study.curves.columns if c.startswith("grid.")])
    runs_d, curves_d = cbs_tables(
        study.runs.filter(keep), curves.filter(keep), data_sizes, ref_batch, seq_len
    )
    tables = root / "cbs"
    write_parquet(tables / "runs.parquet", runs_d)
    write_parquet(tables / "curves.parquet", curves_d)
    per_d = load_study(tables)
    common = dict(
        study=per_d, ref_batch=ref_batch, noise_batch=noise_batch, n_boot=n_boot, seed=seed
    )
    res = fit_cbs(loss="ewa_eval_loss", **common)
    raw = fit_cbs(loss="eval_loss", **common)
    res.to_json(root / "CBS.json")
    raw.to_json(root / "CBS_raw.json")
    per_b = noise_by_batch(per_d.curves, res, batch_sizes)
    b_min = 4 * ref_batch
    median = noise_median(per_b, b_min)
    if plots:
        from scalelaws.critical_batch.plots import plot_cbs, plot_cbs_study

        plot_cbs(list(res.groups), res.scaling, root / "cbs.png")
        plot_cbs_study(list(res.groups), median, root / "cbs_study.png")
    write_text(root / "CBS.md", cbs_markdown(res, raw, per_b, median, b_min))
    return res
