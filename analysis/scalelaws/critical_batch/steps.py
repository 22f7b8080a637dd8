"""Steps to a target loss, measured from a study's curves: the input of the S(B) fit (docs/laws.md §2).

Zhang et al., "How Does Critical Batch Size Scale in Pre-training?", ICLR 2025 (arXiv
2410.21676): T(B) = fewest optimizer steps to a target eval loss, minimised over the LR sweep;
the gradient noise scale B_simple at that target (McCandlish et al. 2018, arXiv 1812.06162).
"""

from __future__ import annotations

import numpy as np
import polars as pl

FIT_STATUSES = ("completed", "diverged")  # a diverged run's curve is valid up to divergence


# ---------------------------------------------------------------- steps to target


def first_crossing(steps: np.ndarray, losses: np.ndarray, target: float) -> float | None:
    """First step at which the loss is <= target, linearly interpolated between eval points.

    Between (s0, l0) with l0 > target and (s1, l1 <= target):
    s = s0 + (l0 − target)/(l0 − l1)·(s1 − s0). None when the target is never reached.
    """
    order = np.argsort(steps, kind="stable")
    s, loss = np.asarray(steps, float)[order], np.asarray(losses, float)[order]
    keep = np.isfinite(loss)
    s, loss = s[keep], loss[keep]
    hits = np.flatnonzero(loss <= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(s[0])
    s0, s1, l0, l1 = s[i - 1], s[i], loss[i - 1], loss[i]
    return float(s0 + (l0 - target) / (l0 - l1) * (s1 - s0))


def with_data_size(runs: pl.DataFrame) -> pl.DataFrame:
    """`tokens` = the data size D of each run: the requested budget `grid.tokens` where the table
    has it (sweeps round the steps down, so the planned tokens differ a little between batch
    sizes of one D), else the planned `tokens` (tables written before grid columns existed)."""
    if "grid.tokens" not in runs.columns:
        return runs
    d = pl.col("grid.tokens").cast(pl.Int64, strict=False)
    return runs.with_columns(tokens=pl.coalesce(d, pl.col("tokens")))


def _group_col(runs: pl.DataFrame) -> pl.Expr:
    # A group is one (model size, data size) pair: "85M/D=1.74e+09".
    return pl.format(
        "{}/D={}", pl.col("model"), pl.col("tokens").map_elements(lambda t: f"{t:.3g}", pl.String)
    ).alias("group")


def check_columns(df: pl.DataFrame, cols: tuple[str, ...], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f'{name} lacks columns {missing}; see the study tables contract (docs/concepts.md, "Results tables")'
        )


def final_losses(curves: pl.DataFrame, loss_col: str = "eval_loss") -> pl.DataFrame:
    """Last non-null `loss_col` value of each trial: columns trial, final_loss."""
    return (
        curves.filter(pl.col(loss_col).is_not_null() & pl.col(loss_col).is_finite())
        .sort("trial", "step")
        .group_by("trial", maintain_order=True)
        .agg(pl.col(loss_col).last().alias("final_loss"))
    )


def choose_targets(
    curves: pl.DataFrame, runs: pl.DataFrame, ref_batch: int, loss_col: str = "eval_loss"
) -> pl.DataFrame:
    """Per-group target as in Zhang et al.: the best final eval loss over the LR sweep at
    `ref_batch` (the loss reached at the reference batch size and its full budget).

    Returns columns group, target. Only completed runs define a target.
    """
    runs = with_data_size(runs)
    ref = runs.filter((pl.col("status") == "completed") & (pl.col("batch_size") == ref_batch))
    out = (
        ref.with_columns(_group_col(ref))
        .join(final_losses(curves, loss_col), on="trial", how="inner")
        .group_by("group")
        .agg(pl.col("final_loss").min().alias("target"))
    )
    all_groups = runs.with_columns(_group_col(runs))["group"].unique().to_list()
    lacking = sorted(set(all_groups) - set(out["group"].to_list()))
    if lacking:
        raise ValueError(
            f"groups {lacking} have no completed run with an eval loss at ref_batch={ref_batch}; "
            "pass an explicit target or a ref_batch present in every group"
        )
    return out


def steps_to_target(
    curves: pl.DataFrame,
    runs: pl.DataFrame,
    target: float | None = None,
    ref_batch: int | None = None,
    loss_col: str = "eval_loss",
) -> pl.DataFrame:
    """Fewest optimizer steps to reach the target loss, per (group, batch size) (Zhang et al.).

    For each trial: first crossing of `target` by `loss_col` (linear interpolation between
    eval points). Seeds at the same (group, batch, lr) are averaged (an LR counts as reached
    only if every seed reached it); then the minimum over the LR sweep is taken.
    `target=None` picks each group's target with `choose_targets` (needs `ref_batch`).
    Use `loss_col="ewa_eval_loss"` for the EWA model's loss when curves have it.

    A group is (model, D); D is `grid.tokens` when the table has it (with_data_size).
    Returns one row per (group, batch_size): group, model, params, tokens, batch_size,
    target, steps_to_target (null when not reached), reached, trial, lr (the best LR's
    trial and value; null when not reached), lr_edge ("high" / "low" when that LR is the
    highest / lowest of two or more swept there: a faster LR may lie beyond the sweep).
    """
    check_columns(
        runs, ("trial", "status", "model", "params", "batch_size", "lr", "tokens"), "runs"
    )
    check_columns(curves, ("trial", "step", loss_col), "curves")
    runs = with_data_size(runs).filter(pl.col("status").is_in(FIT_STATUSES))
    if runs.height == 0:
        raise ValueError("runs has no completed or diverged trial; nothing to measure")
    runs = runs.with_columns(_group_col(runs))
    if target is None:
        if ref_batch is None:
            raise ValueError("steps_to_target needs target or ref_batch to choose the target")
        targets = choose_targets(curves, runs, ref_batch, loss_col)
    else:
        targets = runs.select(pl.col("group").unique(), pl.lit(float(target)).alias("target"))
    runs = runs.join(targets, on="group", how="left")

    target_of = dict(zip(runs["trial"].to_list(), runs["target"].to_list(), strict=True))
    rows = []
    for (trial,), part in curves.filter(pl.col("trial").is_in(list(target_of))).group_by("trial"):
        step = part["step"].to_numpy()
        loss = part[loss_col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        rows.append((trial, first_crossing(step, loss, target_of[trial])))
    hit = pl.DataFrame(rows, schema={"trial": pl.String, "steps": pl.Float64}, orient="row")
    per_trial = runs.join(hit, on="trial", how="left")  # a trial without a curve: not reached

    keys = ["group", "model", "params", "tokens", "batch_size", "target"]
    per_lr = per_trial.group_by([*keys, "lr"]).agg(
        pl.col("steps").mean().alias("steps"),
        pl.col("steps").null_count().alias("misses"),
        pl.col("trial").sort().first().alias("trial"),
    )
    per_lr = per_lr.with_columns(
        pl.when(pl.col("misses") == 0).then(pl.col("steps")).otherwise(None).alias("steps")
    )
    best = (
        per_lr.sort("steps", "lr", nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("steps").first().alias("steps_to_target"),
            pl.col("trial").first(),
            pl.col("lr").first(),
            pl.col("lr").max().alias("lr_max"),
            pl.col("lr").min().alias("lr_min"),
            pl.col("lr").n_unique().alias("n_lr"),
        )
        .with_columns(reached=pl.col("steps_to_target").is_not_null())
        .with_columns(
            pl.when(pl.col("reached")).then(pl.col("trial")).alias("trial"),
            pl.when(pl.col("reached")).then(pl.col("lr")).alias("lr"),
        )
    )
    edge = pl.col("reached") & (pl.col("n_lr") >= 2)
    best = best.with_columns(
        lr_edge=pl.when(edge & (pl.col("lr") == pl.col("lr_max")))
        .then(pl.lit("high"))
        .when(edge & (pl.col("lr") == pl.col("lr_min")))
        .then(pl.lit("low"))
        .otherwise(None)
    ).drop("lr_max", "lr_min", "n_lr")
    return best.sort("params", "tokens", "batch_size")


def noise_scale_at_target(
    curves: pl.DataFrame, steps: pl.DataFrame, ref_batch: int
) -> pl.DataFrame:
    """Gradient noise scale B_simple (McCandlish App. A.1) logged by the trainer, read where
    each group's run at batch `ref_batch` (its best LR) reaches the target.

    Any batch size with a logged B_simple will do: B_simple is a property of the weights at
    that loss, and its estimate from (B/2, B) gradient norms is less noisy at a larger B.
    Linear interpolation between logged values; outside the logged range the nearest value.
    Returns group, trial, step, noise_scale (null where not reached or never logged).
    """
    ref = steps.filter(pl.col("batch_size") == ref_batch).select(
        "group", "trial", "steps_to_target"
    )
    has_col = "noise_scale" in curves.columns
    out = []
    for group, trial, step in ref.iter_rows():
        value = None
        if has_col and trial is not None and step is not None:
            part = curves.filter(
                (pl.col("trial") == trial)
                & pl.col("noise_scale").is_not_null()
                & pl.col("noise_scale").is_finite()
            ).sort("step")
            if part.height:
                xs, ys = part["step"].to_numpy(), part["noise_scale"].to_numpy()
                value = float(np.interp(step, xs, ys))  # np.interp clamps = nearest at ends
        out.append((group, trial, step, value))
    schema = {"group": pl.String, "trial": pl.String, "step": pl.Float64, "noise_scale": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")
