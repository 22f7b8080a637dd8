"""A study's results as Polars frames: `load_study(DIR)` reads what `scalelab collect DIR` wrote.

    DIR/runs.parquet    one row per trial (docs/concepts.md "Results tables"), with `grid.<key>` columns
                        for the study's grid point when the platform wrote them
    DIR/curves.parquet  one row per logged step of every trial
    DIR/study.json      the study's description (optional)

`Study.curves` gets the `grid.*` columns of its trial joined in, so curves filter by grid value:
`study.curves.filter(pl.col("grid.schedule.name").is_in(["constant", "cosine"]))`. Tables
written before the grid columns existed load as they are (filter on runs columns such as
`schedule` and `model` instead). `Study.lr(trial)` is the exact per-update LR of a trial,
rebuilt from its `spec` JSON with the one schedule registry (scalelaws.schedules).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaws import schedules
from scalelaws.io import read_json

RUNS, CURVES, META = "runs.parquet", "curves.parquet", "study.json"


@dataclass(frozen=True, eq=False)
class Study:
    """A loaded study: `runs` and `curves` frames, `meta` (study.json, {} if absent)."""

    root: Path
    runs: pl.DataFrame
    curves: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False)  # trial -> (lr, warmup)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __repr__(self) -> str:
        grid = ", ".join(self.grid_columns) or "no grid columns"
        return (
            f"Study({self.root}: {self.runs.height} runs, {self.curves.height} curve rows; {grid})"
        )

    @property
    def grid_columns(self) -> list[str]:
        """The `grid.*` columns of runs (empty for tables written before they existed)."""
        return [c for c in self.runs.columns if c.startswith("grid.")]

    def trials(self, status: str | None = "completed") -> list[str]:
        """Trial names, in runs order; only those with `status` unless it is None."""
        runs = self.runs if status is None else self.runs.filter(pl.col("status") == status)
        return runs["trial"].to_list()

    def spec(self, trial: str) -> dict:
        """The identity spec of `trial` (runs column `spec`, JSON text) as a dict."""
        if "spec" not in self.runs.columns:
            raise ValueError(f"{self.root}: runs has no 'spec' column; run `scalelab collect`")
        rows = self.runs.filter(pl.col("trial") == trial)["spec"]
        if rows.len() == 0:
            raise ValueError(f"trial {trial!r} is not in {self.root / RUNS}; check the name")
        return json.loads(rows[0])

    def schedule(self, trial: str) -> tuple[np.ndarray, int]:
        """(exact per-update LR, warmup steps) of `trial`, from its spec."""
        if trial not in self._cache:
            self._cache[trial] = spec_lr(self.spec(trial), trial)
        return self._cache[trial]

    def lr(self, trial: str) -> np.ndarray:
        """Per-update LR of `trial`: lr[t] is the LR of update t (0-based); a curves row at step s
        logged lr[s − 1]."""
        return self.schedule(trial)[0]

    def sha256(self) -> str:
        """sha256 of runs.parquet and curves.parquet as they are on disk ('' if not on disk)."""
        return tables_sha256(self.root)


def has_tables(root: str | Path) -> bool:
    """True if the folder holds a collected study: runs.parquet and curves.parquet."""
    return (Path(root) / RUNS).is_file() and (Path(root) / CURVES).is_file()


def tables_sha256(root: str | Path) -> str:
    """sha256 of a study folder's runs.parquet and curves.parquet ('' if either is missing)."""
    if not has_tables(root):
        return ""
    h = hashlib.sha256()
    for name in (RUNS, CURVES):
        h.update((Path(root) / name).read_bytes())
    return h.hexdigest()


def spec_lr(spec: dict, trial: str = "") -> tuple[np.ndarray, int]:
    """(per-update LR, warmup steps) from a trial's identity spec: spec["schedule"] {name,
    warmup_steps, params}, spec["optim"]["lr"] (peak) and spec["total_steps"]."""
    try:
        sch, peak, total = spec["schedule"], spec["optim"]["lr"], spec["total_steps"]
        name, warm, params = sch["name"], int(sch.get("warmup_steps", 0)), sch.get("params") or {}
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"trial {trial!r}: spec lacks {e} (needs schedule, optim.lr, total_steps); "
            "collect the study again or pass the LR yourself"
        ) from None
    return schedules.lr_array(name, peak, total, warm, **params), warm


def load_study(path: str | Path) -> Study:
    """Read DIR/runs.parquet and DIR/curves.parquet (and study.json); join the runs' grid.*
    columns into curves."""
    root = Path(path)
    missing = [n for n in (RUNS, CURVES) if not (root / n).is_file()]
    if missing:
        raise ValueError(f"{root}: no {'/'.join(missing)}; run `scalelab collect {root}` first")
    runs = pl.read_parquet(root / RUNS)
    curves = pl.read_parquet(root / CURVES)
    grid = [c for c in runs.columns if c.startswith("grid.") and c not in curves.columns]
    if grid and "trial" in curves.columns:
        curves = curves.join(
            runs.select("trial", *grid), on="trial", how="left", maintain_order="left"
        )
    meta = read_json(root / META) if (root / META).is_file() else {}
    return Study(root=root, runs=runs, curves=curves, meta=meta)


def as_study(study: Study | str | Path) -> Study:
    """A Study, or the folder to load one from."""
    return study if isinstance(study, Study) else load_study(study)
