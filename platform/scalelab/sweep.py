"""SweepSpec: a study declared as data, expanded into TrialSpecs with stable names.

A grid maps dotted TrialSpec fields to value lists and is crossed; `points` adds explicit grid
points. Two budget keys are not spec fields: `tokens` (total training tokens; sets total_steps
= tokens / (batch_size x seq_len)) and `exposures` (knowledge data: passes over every person).

    SweepSpec(name="lr_batch", base=TrialSpec(...),
              grid={"model.size": ["150K", "500K"], "batch_size": [16, 64],
                    "optim.lr": [1e-3, 3e-3], "seed": [0, 1]})
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalelab.config import DataSpec, ModelSpec, OptimSpec, ScheduleSpec, SpecError, TrialSpec

BUDGET_KEYS = ("tokens", "exposures")


@dataclass(frozen=True)
class SweepSpec:
    name: str  # study name: results/<name>/, W&B group
    base: TrialSpec = field(default_factory=TrialSpec)  # defaults for every trial
    grid: dict[str, list] = field(default_factory=dict)  # dotted field -> values (crossed)
    points: list[dict] = field(default_factory=list)  # extra explicit grid points
    storage: str = ""  # results folder (local or a mounted shared FS); "" = see launch.study_dir
    max_failures: int = 1  # retries of a failed trial (Tune) and of a failed worker group (Train)
    asha: dict | None = None  # e.g. {"metric": "eval_loss", "grace_period": 100}; None = full runs
    driver_resources: dict = field(default_factory=dict)  # custom Ray resources for each trial

    def validate(self) -> SweepSpec:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", self.name):
            raise SpecError(f"name: {self.name!r} must be letters, digits, '_', '-' or '.'")
        if not isinstance(self.grid, dict):
            raise SpecError("grid: must be a dict of dotted field -> list of values")
        for key, values in self.grid.items():
            _check_key(key, "grid")
            if not isinstance(values, list | tuple) or len(values) == 0:
                raise SpecError(f"grid.{key}: must be a non-empty list of values")
        for i, p in enumerate(self.points):
            if not isinstance(p, dict):
                raise SpecError(f"points[{i}]: must be a dict of dotted field -> value")
            for key in p:
                _check_key(key, f"points[{i}]")
        if not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise SpecError("max_failures: must be an int >= 0")
        if self.asha is not None:
            unknown = set(self.asha) - {"metric", "grace_period", "reduction_factor"}
            if unknown:
                raise SpecError(
                    f"asha.{sorted(unknown)[0]}: unknown; allowed: metric, "
                    "grace_period, reduction_factor"
                )
        return self


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """All trials of a sweep, validated, in a stable order with stable, unique names."""
    spec.validate()
    keys = list(spec.grid)
    points = (
        [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(spec.grid[k] for k in keys))
        ]
        if keys
        else []
    )
    points += [dict(p) for p in spec.points]
    if not points:
        points = [{}]  # no grid and no points: the base trial alone
    trials, seen = [], {}
    for point in points:
        trial = _apply(spec.base, point, spec.name)
        try:
            trial.validate()
        except SpecError as e:
            where = ", ".join(f"{k}={_short(v)}" for k, v in point.items())
            raise SpecError(f"{e} (grid point {where})") from None
        if trial.name in seen:
            raise SpecError(
                f"grid: two grid points give the same trial {trial.name!r}; "
                "remove the duplicate value"
            )
        seen[trial.name] = True
        trials.append(trial)
    return trials


def _check_key(key: str, where: str) -> None:
    if key in BUDGET_KEYS or key in ("model", "optim", "schedule", "data"):
        return
    parts = key.split(".")
    cls = TrialSpec
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            raise SpecError(f"{where}.{key}: unknown field {part!r}; allowed: {', '.join(names)}")
        sub = _NESTED.get(part) if cls is TrialSpec else None
        if part == "params" and i < len(parts) - 1:
            return  # free-form schedule/data params, checked when each trial validates
        if sub is None:
            if i != len(parts) - 1:
                raise SpecError(f"{where}.{key}: {part!r} has no sub-fields")
            return
        cls = sub


_NESTED = {"model": ModelSpec, "optim": OptimSpec, "schedule": ScheduleSpec, "data": DataSpec}


def _apply(base: TrialSpec, point: dict[str, Any], study: str) -> TrialSpec:
    d = base.to_dict()
    d["study"] = study
    budget = {k: point[k] for k in BUDGET_KEYS if k in point}
    for key, value in point.items():
        if key in BUDGET_KEYS:
            continue
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        node, parts = d, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = dict(value) if isinstance(value, dict) else value
    trial = TrialSpec.from_dict(d)
    if "exposures" in budget:
        trial = _with_exposures(trial, budget["exposures"])
    if "tokens" in budget:
        trial = _with_tokens(trial, budget["tokens"])
    return dataclasses.replace(trial, name=trial_name(trial, point))


def _seq_len(trial: TrialSpec) -> int:
    if trial.seq_len:
        return trial.seq_len
    from scalelab import data

    return data.build(trial.data.name, seed=trial.data.seed, **trial.data.params).seq_len


def _with_tokens(trial: TrialSpec, tokens: int) -> TrialSpec:
    """Budget in tokens -> optimizer steps (rounded down; at least one)."""
    if not isinstance(tokens, int | float) or tokens <= 0:
        raise SpecError(f"tokens: must be a positive number of training tokens, got {tokens!r}")
    steps = max(1, int(tokens // (trial.batch_size * _seq_len(trial))))
    return dataclasses.replace(trial, total_steps=steps)


def _with_exposures(trial: TrialSpec, exposures: float) -> TrialSpec:
    """Knowledge data: `exposures` passes over every person (Allen-Zhu & Li 2024 use 100, 1000)."""
    from scalelab import data

    if not isinstance(exposures, int | float) or exposures <= 0:
        raise SpecError(f"exposures: must be a positive number, got {exposures!r}")
    src = data.build(trial.data.name, seed=trial.data.seed, **trial.data.params)
    if not getattr(src, "tokens_per_epoch", None):
        raise SpecError(
            f"exposures: data source {trial.data.name!r} has no people to expose; "
            "use a knowledge source (bios, biod) or set `tokens`"
        )
    return _with_tokens(trial, int(exposures * src.tokens_per_epoch))


def trial_name(trial: TrialSpec, point: dict[str, Any]) -> str:
    """Readable and stable: N150K-B32-lr3e-3-cosine-s0 (+ other grid keys) + content hash."""
    parts = [
        f"N{trial.model.size}",
        f"B{trial.batch_size}",
        f"lr{_short(trial.optim.lr)}",
        trial.schedule.name,
        f"s{trial.seed}",
    ]
    for key, value in point.items():
        if key in ("model.size", "batch_size", "optim.lr", "schedule", "schedule.name", "seed"):
            continue
        label = {"tokens": "D", "exposures": "E"}.get(key, key.split(".")[-1])
        if isinstance(value, dict) or dataclasses.is_dataclass(value):
            continue  # structured values show up in the hash
        parts.append(f"{label}{_short(value)}")
    name = "-".join(re.sub(r"[^A-Za-z0-9.+-]", "", str(p)) for p in parts)
    return f"{name}-{trial.content_hash()[:6]}"


def _short(v: Any) -> str:
    if isinstance(v, float):  # 3e-3, 1.5e-3, 0.02 (no rounding: 1.5e-3 stays 1.5e-3)
        if v < 1e-2 or v >= 1e4:
            return np.format_float_scientific(v, trim="-", exp_digits=1).replace("+", "")
        return f"{v:g}"
    if isinstance(v, int) and v >= 10_000:
        for unit, div in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
            if v >= div and v % (div // 10) == 0:
                return f"{v / div:g}{unit}"
    return str(v)


# ---- helpers for common designs ----


def lr_batch_grid(sizes: list[str], batch_sizes: list[int], lrs: list[float]) -> dict[str, list]:
    """Batch-size x LR grid per model size (critical-batch-size studies)."""
    return {"model.size": list(sizes), "batch_size": list(batch_sizes), "optim.lr": list(lrs)}


def schedules_at_budget(schedules: list[ScheduleSpec], total_steps: int) -> list[dict]:
    """Points: each schedule at the same step budget (multi-power-law studies)."""
    return [{"schedule": s, "total_steps": total_steps} for s in schedules]


def isoflop(
    flop_budgets: list[float], sizes: list[str], vocab_size: int, seq_len: int, batch_size: int
) -> list[dict]:
    """Points on isoFLOP curves: for budget C and size N, D = C / flops_per_token(N) tokens."""
    from scalelab.model import flops_per_token, model_args

    points = []
    for c in flop_budgets:
        for size in sizes:
            tokens = int(c / flops_per_token(model_args(size, vocab_size, seq_len)))
            if tokens >= batch_size * seq_len:
                points.append({"model.size": size, "tokens": tokens})
    return points


def exposures_budget(exposures: list[float]) -> dict[str, list]:
    """Grid entry for knowledge studies: e.g. [100, 1000] exposures per person."""
    return {"exposures": list(exposures)}
