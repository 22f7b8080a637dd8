"""Loss curves for the multi-power law (docs/laws.md §1): the `Curve` type, the per-step LR, and curves
built from a study's curves table (Polars) or from step,lr,loss files.

Step convention (scalelab): the loss at step s is measured after s updates, which used
lr[0:s]; a curves row's `lr` is the LR of the last of those updates, lr[s − 1]. Files whose
`step` is the 0-based index of the update just made (the MPL reference CSVs: row step s has LR
lr[s]) are read with step_offset=1.

The exact per-step LR comes from the trial's spec when the caller has it (a `Study`); otherwise
it is rebuilt from the logged lr rows (`build_lr`), exact when every step was logged. Each Curve
records where its LR came from in `lr_source` ("spec", "given", "rebuilt", "spec-mismatch").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LR_SOURCES = ("given", "spec", "rebuilt", "spec-mismatch")


@dataclass(frozen=True, eq=False)
class Curve:
    """One loss curve: per-step LR schedule `lr`, evaluated `steps`, measured `loss`."""

    name: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    role: str = "fit"  # "fit" or "test"
    lr_source: str = "given"  # one of LR_SOURCES

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps)
        if steps.shape != np.asarray(self.loss).shape:
            raise ValueError(f"curve {self.name!r}: steps and loss differ in length")
        if steps.size and (steps.min() < 1 or steps.max() > len(self.lr)):
            raise ValueError(
                f"curve {self.name!r}: steps must lie in 1..len(lr)={len(self.lr)} "
                "(loss at step s uses lr[0:s]); extend lr or drop those rows"
            )
        if self.role not in ("fit", "test"):
            raise ValueError(
                f"curve {self.name!r}: role must be 'fit' or 'test', got {self.role!r}"
            )


def build_lr(
    steps: np.ndarray, lrs: np.ndarray, warmup_steps: int, total: int | None = None
) -> np.ndarray:
    """Per-step LR from logged (step, lr) rows.

    Steps 0..W−1 (before the first row) get the warmup np.linspace(0, lr_first, W); after that
    the LR is piecewise-linear between logged steps, and held flat past the last row. A file that
    logs every step from 0 is returned as is.
    """
    steps = np.asarray(steps, dtype=np.int64)
    lrs = np.asarray(lrs, dtype=float)
    ok = np.isfinite(lrs)
    steps, lrs = steps[ok], lrs[ok]
    if steps.size == 0:
        raise ValueError("no rows with an lr value: the LR schedule cannot be rebuilt")
    order = np.argsort(steps, kind="stable")
    steps, lrs = steps[order], lrs[order]
    if warmup_steps > 0 and steps[0] > 0:
        n = int(min(warmup_steps, steps[0]))
        steps = np.concatenate([np.arange(n), steps])
        lrs = np.concatenate([np.linspace(0.0, lrs[0], warmup_steps)[:n], lrs])
    n_total = int(max(steps[-1] + 1, total or 0))
    return np.interp(np.arange(n_total), steps, lrs)


def make_curve(
    name: str,
    steps,
    lrs,
    losses,
    *,
    role: str = "fit",
    warmup_steps: int = 0,
    step_offset: int = 0,
    lr: np.ndarray | None = None,
) -> Curve:
    """A Curve from logged rows (step, lr, loss; loss NaN on rows that only carry the LR).

    A row's `lr` is lr[step + offset − 1]. `lr` (the exact schedule) is used when it covers the
    curve and agrees with the logged rows; otherwise the LR is rebuilt from the rows. Loss rows
    before the end of warmup are dropped (the law describes the post-warmup curve).
    """
    done = np.asarray(steps, dtype=np.int64) + step_offset  # updates done at each row
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    ok = np.isfinite(losses) & (done >= max(1, warmup_steps))
    if not ok.any():
        raise ValueError(
            f"curve {name!r}: no loss rows after warmup ({warmup_steps} steps); "
            "log the loss past the warmup or lower warmup_steps"
        )
    last = int(done[ok].max())
    has = (done >= 1) & np.isfinite(lrs)
    source = "rebuilt"
    if lr is not None:
        lr = np.asarray(lr, float)
        idx = done[has] - 1
        agrees = len(lr) >= last and (
            idx.size == 0 or np.allclose(lr[np.minimum(idx, len(lr) - 1)], lrs[has], rtol=1e-6)
        )
        source = "given" if agrees else "spec-mismatch"
        lr = lr if agrees else None
    if lr is None:
        lr = build_lr(done[has] - 1, lrs[has], warmup_steps, total=last)
    return Curve(name, lr, done[ok], losses[ok], role=role, lr_source=source)


MAX_STEPS = 10_000_000  # a fit holds per-step LR arrays of the longest curve's length


def check_rows(name: str, steps, lrs, losses, *, sorted_: bool = True, first_row: int = 2) -> None:
    """One-line ValueErrors, naming the column and row, for rows a curve cannot use.

    steps: whole numbers >= 0 and < MAX_STEPS, strictly increasing when `sorted_` (else only
    unique); lr: null allowed (a row without an LR), else finite and >= 0, not all 0;
    loss: null allowed (an LR-only row), else finite and > 0. `first_row` is the file line of
    the first row (2: after a CSV header)."""
    steps = np.asarray(steps, float)
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)

    def fail(i: int, what: str, fix: str) -> None:
        raise ValueError(f"{name}: row {i + first_row}: {what}; {fix}")

    for i in np.flatnonzero(~np.isfinite(steps) | (steps < 0) | (steps != np.round(steps))):
        fail(int(i), f"step = {steps[i]}", "steps are whole numbers of optimizer updates >= 0")
    big = np.flatnonzero(steps >= MAX_STEPS)
    if big.size:
        fail(int(big[0]), f"step = {steps[big[0]]:.0f} exceeds the {MAX_STEPS:,} steps a fit "
             "allocates for", "check the step column (optimizer updates, not tokens)")  # fmt: skip
    d = np.diff(steps)
    for i in np.flatnonzero(d == 0)[:1]:
        fail(int(i) + 1, f"step {steps[i]:.0f} appears twice", "keep one row per step")
    if sorted_:
        for i in np.flatnonzero(d < 0)[:1]:
            fail(int(i) + 1, f"step {steps[i + 1]:.0f} after step {steps[i]:.0f}", "sort by step")
    bad_lr = np.flatnonzero(np.isinf(lrs) | (lrs < 0))
    if bad_lr.size:
        fail(int(bad_lr[0]), f"lr = {lrs[bad_lr[0]]}", "an LR is a finite number >= 0")
    given = lrs[np.isfinite(lrs)]  # no lr at all: build_lr says so
    if given.size and not np.any(given > 0):
        raise ValueError(f"{name}: lr is 0 on every row: the law needs a positive LR")
    bad = np.flatnonzero(np.isinf(losses) | (losses <= 0))
    if bad.size:
        fail(int(bad[0]), f"loss = {losses[bad[0]]}", "a loss is a finite number > 0 (nats)")


def read_curve_file(
    path: str | Path, *, role: str = "fit", warmup_steps: int = 0, step_offset: int = 0
) -> Curve:
    """A Curve from a CSV or Parquet file with columns step, lr, loss (loss may be empty on rows
    that only carry the LR); the name is the file's stem and the LR is rebuilt from the rows.
    Bad rows (NaN/inf, unsorted or duplicate steps, a step past MAX_STEPS, mistyped columns) are
    one-line ValueErrors naming the column and row (check_rows)."""
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; give a step,lr,loss .csv or .parquet")
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path.name}: use a .csv or .parquet file with columns step,lr,loss")
    try:
        df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    except pl.exceptions.NoDataError:
        df = pl.DataFrame()
    missing = sorted({"step", "lr", "loss"} - set(df.columns))
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (need step,lr,loss)")
    if df.height == 0:
        raise ValueError(f"{path}: no rows; give one row per logged step (step,lr,loss)")
    cols = {c: _numbers(df, c, path) for c in ("step", "lr", "loss")}
    if np.isnan(cols["step"]).any():
        i = int(np.flatnonzero(np.isnan(cols["step"]))[0])
        raise ValueError(f"{path}: row {i + 2}: step is empty; every row needs its step")
    nan_loss = df["loss"].cast(pl.Float64, strict=False).is_nan().fill_null(False).to_numpy()
    if nan_loss.any():
        i = int(np.flatnonzero(nan_loss)[0])
        raise ValueError(
            f"{path}: row {i + 2}: loss is NaN; drop the row (a diverged or broken log), or "
            "leave the cell empty on a row that only carries the LR"
        )
    check_rows(str(path), cols["step"], cols["lr"], cols["loss"])
    return make_curve(
        path.stem,
        cols["step"].astype(np.int64),
        cols["lr"],
        cols["loss"],
        role=role,
        warmup_steps=warmup_steps,
        step_offset=step_offset,
    )


def _numbers(df, col: str, path) -> np.ndarray:
    """A column as float64 (null -> NaN); ValueError naming the column when it is not numeric."""
    import polars as pl

    try:
        return df[col].cast(pl.Float64, strict=True).fill_null(float("nan")).to_numpy()
    except pl.exceptions.PolarsError:
        raise ValueError(
            f"{path}: column {col} holds {df[col].dtype} values, not numbers; fix that column"
        ) from None


def peak_step(steps: np.ndarray, lrs: np.ndarray) -> int:
    """First logged step whose lr is the curve's peak: the end of warmup, read off the rows (the
    registry's warmup reaches the peak at lr[W − 1], logged at step W)."""
    ok = np.isfinite(lrs)
    if not ok.any():
        return 0
    s, v = np.asarray(steps)[ok], np.asarray(lrs)[ok]
    return int(s[np.argmax(v >= v.max() * (1 - 1e-9))])


ScheduleOf = Callable[[str], "tuple[np.ndarray, int] | None"]


def curves_from_frame(
    frame,
    *,
    role: str = "fit",
    loss: str = "eval_loss",
    schedule_of: ScheduleOf | None = None,
    warmup_steps: int | None = None,
) -> list[Curve]:
    """One Curve per trial of a curves table (columns trial, step, lr and `loss`), in the order
    the trials first appear.

    `schedule_of(trial)` gives (exact per-step LR, warmup steps) from the trial's spec, or None;
    without it the LR is rebuilt from the lr rows and the warmup is `warmup_steps` or, when
    None, the first step at the peak LR. Loss rows at steps <= warmup are dropped.
    """
    import polars as pl

    need = ["trial", "step", "lr", loss]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        hint = (
            f"pass loss= one of {[c for c in frame.columns if 'loss' in c]}"
            if loss in missing
            else ""
        )
        raise ValueError(f"curves frame lacks columns {missing}; {hint or 'use a curves table'}")
    out = []
    for (trial,), part in frame.select(need).group_by("trial", maintain_order=True):
        part = part.sort("step")
        steps = part["step"].to_numpy()
        lrs = part["lr"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        losses = part[loss].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        exact = schedule_of(trial) if schedule_of is not None else None
        # duplicate or out-of-range steps, bad LRs unless the spec gives them (rows counted from
        # 1 in step order); a non-finite loss is a row without a measurement in a curves table
        none = np.full(steps.size, np.nan)
        check_rows(f"curves of trial {trial}", steps, none if exact else lrs, none, first_row=1)
        if exact is not None:
            lr, warm = exact
        else:
            lr = None
            warm = peak_step(steps, lrs) if warmup_steps is None else int(warmup_steps)
            steps, lrs, losses = _anchor_warmup(steps, lrs, losses)
        losses = np.where(steps > warm, losses, np.nan)  # the law is fitted after warmup
        if not np.isfinite(losses).any():
            continue  # nothing logged after warmup (e.g. a trial that stopped early)
        cv = make_curve(trial, steps, lrs, losses, role=role, warmup_steps=warm, lr=lr)
        if exact is not None and cv.lr_source == "given":
            cv = Curve(cv.name, cv.lr, cv.steps, cv.loss, cv.role, lr_source="spec")
        out.append(cv)
    return out


def _anchor_warmup(steps, lrs, losses):
    """Rows that start inside a linear warmup get the registry's lr[0] = 0 as a row at step 1,
    so the rebuilt warmup is the straight line it was (exact for lr[0:W] = linspace(0, P, W))."""
    ok = np.isfinite(lrs)
    if not ok.any() or steps[ok][0] <= 1 or lrs[ok][0] >= np.nanmax(lrs):
        return steps, lrs, losses
    return (
        np.concatenate([[1], steps]),
        np.concatenate([[0.0], lrs]),
        np.concatenate([[np.nan], losses]),
    )
