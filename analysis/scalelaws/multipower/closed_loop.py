"""Closed loops: a proposal was run (its validation study); compare predicted with measured.

    prop = ScheduleProposal.load("results/schedules/proposed_schedule.json")
    check = load_study(find_validation("results/schedules"))
    predicted_vs_measured(prop, check.runs)

A validation study runs the proposed schedule (registry name `array`) next to the proposal's
baselines (`cosine`, `wsd`) for the same budget (experiments/schedules.py). Its folder is
`<study>_validate` beside the study, or `validate/` inside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result
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


# --------------------------------------------------------------------------- paired differences

PROPOSAL = "array"  # the registry name the validation study runs the proposal under
BASELINES = ("cosine", "wsd")
MIN_SEEDS = 5


@dataclass(frozen=True)
class Paired:
    """The proposal against one baseline, paired by seed (same seed: same init, same data
    order). differences[i] = proposal − baseline at seeds[i]; lo/hi: the t-interval of their
    mean at the result's level (None with fewer than 2 seeds)."""

    baseline: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    lo: float | None
    hi: float | None
    n: int
    excludes_zero: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Paired:
        kw = {f.name: d[f.name] for f in fields(cls)}
        kw["seeds"], kw["differences"] = tuple(kw["seeds"]), tuple(kw["differences"])
        return cls(**kw)


@dataclass(frozen=True)
class PairedDifferences(Result):
    """Measured `loss` of the proposal minus each baseline, paired by seed.

    comparisons: one Paired per baseline that shares seeds with the proposal. params
    {"proposed-<baseline>": mean difference}, intervals {same keys: (lo, hi)} at `level`,
    metrics {same keys: {"n", "sd"}}; negative means the proposal reached the lower loss."""

    comparisons: tuple[Paired, ...]
    level: float
    loss: str
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def comparison(self, baseline: str) -> Paired:
        """The comparison with `baseline` ("cosine" or "wsd")."""
        for c in self.comparisons:
            if c.baseline == baseline:
                return c
        have = [c.baseline for c in self.comparisons]
        raise KeyError(f"no comparison with {baseline!r}; have {have}")

    def table(self) -> pl.DataFrame:
        """One row per baseline: comparison, mean, lo, hi, n, excludes_zero."""
        rows = [
            {"comparison": f"proposed − {c.baseline}", "mean": c.mean, "lo": c.lo, "hi": c.hi}
            | {"n": c.n, "excludes_zero": c.excludes_zero}
            for c in self.comparisons
        ]
        schema = {"comparison": pl.String, "mean": pl.Float64, "lo": pl.Float64}
        schema |= {"hi": pl.Float64, "n": pl.Int64, "excludes_zero": pl.Boolean}
        return pl.DataFrame(rows, schema=schema)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedDifferences:
        pairs = tuple(Paired.from_dict(c) for c in d.get("comparisons") or ())
        return super().from_dict(d | {"comparisons": pairs})


def paired_differences(
    runs: pl.DataFrame,
    loss: str = "final_eval_loss",
    level: float = 0.95,
    *,
    proposal: str = PROPOSAL,
    baselines: tuple[str, ...] = BASELINES,
    total_steps: int | None = None,
    min_seeds: int = MIN_SEEDS,
) -> PairedDifferences:
    """The proposal's measured `loss` minus each baseline's, seed by seed, over the completed
    runs of a validation study (columns schedule, seed, status, `loss`; total_steps when there).

    Per baseline: the differences, their mean and its `level` t-interval (scipy.stats.t, n − 1
    degrees of freedom). A seed run by one schedule only is dropped (UNPAIRED_SEEDS); fewer
    than `min_seeds` pairs warn TOO_FEW_SEEDS; an interval that holds 0 says NOT_SEPARATED.
    total_steps: the budget compared (default: the proposal's, when the runs have the column).
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must lie strictly between 0 and 1 (e.g. 0.95)")
    done, steps = _completed(runs, loss, proposal, total_steps)
    seeds = {name: _by_seed(done, name, loss) for name in (proposal, *baselines)}
    diags, comparisons = [], []
    for name in baselines:
        mine, theirs = seeds[proposal], seeds[name]
        common = sorted(set(mine) & set(theirs))
        alone = sorted(set(mine) ^ set(theirs))
        if alone:
            diags.append(_unpaired(name, alone, mine, theirs))
        if not common:
            continue
        c = _compare(name, common, [mine[s] - theirs[s] for s in common], level)
        comparisons.append(c)
        diags += _checks(c, level, min_seeds)
    if not comparisons:
        raise ValueError(
            f"runs: no seed of {proposal!r} pairs with a completed run of {list(baselines)} "
            "(column 'seed'); run the baselines with the proposal's seeds"
        )
    keys = {c.baseline: f"proposed-{c.baseline}" for c in comparisons}
    return PairedDifferences(
        comparisons=tuple(comparisons),
        level=level,
        loss=loss,
        params={keys[c.baseline]: c.mean for c in comparisons},
        intervals={keys[c.baseline]: (c.lo, c.hi) for c in comparisons if c.lo is not None},
        metrics={keys[c.baseline]: {"n": c.n, "sd": _sd(c.differences)} for c in comparisons},
        diagnostics=tuple(diags),
        info={
            "method": "paired by seed; Student t-interval of the mean difference (scipy.stats.t)",
            "difference": "proposal - baseline (negative: the proposal reached the lower loss)",
            "proposal": proposal,
            "baselines": list(baselines),
            "total_steps": steps,
            "min_seeds": min_seeds,
        },
    )


def _completed(runs, loss, proposal, total_steps) -> tuple[pl.DataFrame, int | None]:
    """The completed runs with a finite `loss` at the compared budget, and that budget."""
    if not isinstance(runs, pl.DataFrame):
        raise ValueError(
            f"runs: a Polars DataFrame is needed, got {type(runs).__name__}; pass a validation "
            "study's runs (load_study(find_validation(DIR)).runs)"
        )
    for col in ("schedule", "seed", "status", loss):
        if col not in runs.columns:
            what = "the loss compared (loss=)" if col == loss else "a validation study's column"
            raise ValueError(
                f"runs: no column {col!r} ({what}); pass a validation study's runs table "
                "(load_study(find_validation(DIR)).runs)"
            )
    done = runs.filter(
        (pl.col("status") == "completed") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    )
    mine = done.filter(pl.col("schedule") == proposal)
    if mine.height == 0:
        raise ValueError(
            f"runs: no completed run of schedule {proposal!r} (the proposal) with a {loss!r}; "
            "pass the runs of the validation study that trained it, or proposal="
        )
    if total_steps is None and "total_steps" in done.columns:
        budgets = sorted(mine["total_steps"].unique().drop_nulls().to_list())
        if len(budgets) > 1:
            raise ValueError(
                f"runs: the proposal ran at total_steps {budgets}; pass total_steps= to pick one"
            )
        total_steps = budgets[0] if budgets else None
    if total_steps is not None:
        if "total_steps" not in done.columns:
            raise ValueError("runs: no column 'total_steps' to select total_steps= by; drop it")
        done = done.filter(pl.col("total_steps") == total_steps)
    return done, None if total_steps is None else int(total_steps)


def _by_seed(done: pl.DataFrame, name: str, loss: str) -> dict[int, float]:
    """{seed: loss} of schedule `name`'s runs."""
    rows = done.filter(pl.col("schedule") == name).select("seed", loss)
    if rows["seed"].null_count():
        raise ValueError(f"runs: schedule {name!r} has runs without a 'seed'; give every run one")
    twice = rows.filter(pl.col("seed").is_duplicated())["seed"].unique().sort().to_list()
    if twice:
        raise ValueError(
            f"runs: schedule {name!r} has more than one completed run at seed(s) {twice}; "
            "pass one validation study's runs (or total_steps=)"
        )
    return {int(s): float(v) for s, v in rows.iter_rows()}


def _compare(name: str, seeds: list[int], diffs: list[float], level: float) -> Paired:
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    mean, n = float(d.mean()), int(d.size)
    lo = hi = None
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd == 0:  # every seed the same difference: the t-interval has width 0
            lo = hi = mean
        else:
            a, b = stats.t.interval(level, n - 1, loc=mean, scale=sd / np.sqrt(n))
            lo, hi = float(a), float(b)
    excludes = lo is not None and (lo > 0 or hi < 0)
    return Paired(name, tuple(seeds), tuple(float(x) for x in d), mean, lo, hi, n, excludes)


def _sd(diffs) -> float | None:
    return float(np.std(diffs, ddof=1)) if len(diffs) >= 2 else None


def _unpaired(name: str, alone: list[int], mine: dict, theirs: dict) -> Diagnostic:
    only_p = [s for s in alone if s in mine]
    only_b = [s for s in alone if s in theirs]
    seen = "; ".join(
        f"seed(s) {ss} only in {who}"
        for ss, who in ((only_p, "the proposal"), (only_b, repr(name)))
        if ss
    )
    return Diagnostic(
        "UNPAIRED_SEEDS",
        "warning",
        f"proposed vs {name}: {seen} (no completed run of the other schedule); dropped",
        "rerun the missing seeds so every seed has both runs",
        name,
    )


def _checks(c: Paired, level: float, min_seeds: int) -> list[Diagnostic]:
    out = []
    if c.n < min_seeds:
        out.append(
            Diagnostic(
                "TOO_FEW_SEEDS",
                "warning",
                f"proposed vs {c.baseline}: {c.n} paired seed(s), fewer than {min_seeds}: the "
                "interval is wide or missing and rests on few degrees of freedom",
                f"run at least {min_seeds} seeds of each schedule",
                c.baseline,
            )
        )
    if not c.excludes_zero:
        if c.lo is None:
            seen = f"one paired seed (difference {c.mean:+.4g}) gives no interval"
        else:
            iv = f"{100 * level:g}% interval [{c.lo:+.4g}, {c.hi:+.4g}]"
            seen = f"mean {c.mean:+.4g}, {iv} over {c.n} seeds holds 0"
        out.append(
            Diagnostic(
                "NOT_SEPARATED",
                "info",
                f"proposed − {c.baseline}: {seen}: the law cannot separate them at this scale",
                "read them as equal here; more seeds or a larger scale could separate them",
                c.baseline,
            )
        )
    return out
