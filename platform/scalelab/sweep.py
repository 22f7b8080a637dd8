"""SweepSpec: a study declared as data, expanded into Trials with stable names.

A grid maps dotted fields to value lists and is crossed; `points` adds explicit grid points.
A key names a TrialSpec field (identity: `model.size`, `optim.lr`, `batch_size`, `schedule`,
`data.params.n_people`, ...), a RunConfig field (placement: `eval_every`, `workers`, ...: they
never enter a trial's name or hash), or one of two budget keys that are not spec fields:
`tokens` (total training tokens; sets total_steps = tokens // (batch_size x seq_len)) and
`exposures` (knowledge data: passes over every person). Every trial keeps its grid point.

    SweepSpec(name="lr_batch", base=TrialSpec(...), run=RunConfig(eval_every=50),
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

from scalelab.config import (
    _NESTED,
    RUN_FIELDS,
    RunConfig,
    ScheduleSpec,
    SpecError,
    Trial,
    TrialSpec,
)

BUDGET_KEYS = ("tokens", "exposures")
STEP_KEYS = ("tokens", "exposures", "total_steps")  # each sets the step count: one at most
# grid keys already shown by the fixed part of a name (N<size>-B<batch>-lr<lr>-<schedule>-s<seed>)
_IN_NAME = ("model.size", "batch_size", "optim.lr", "schedule", "schedule.name", "seed")
_SHORT = {"tokens": "D", "exposures": "E", "model.d_model": "d", "model.n_layers": "L"}
_SHORT |= {"model.n_heads": "H"}


@dataclass(frozen=True)
class SweepSpec:
    name: str  # study name: results/<name>/, W&B group
    base: TrialSpec = field(default_factory=TrialSpec)  # identity defaults for every trial
    grid: dict[str, list] = field(default_factory=dict)  # dotted field -> values (crossed)
    points: list[dict] = field(default_factory=list)  # extra explicit grid points
    run: RunConfig = field(default_factory=RunConfig)  # placement defaults for every trial
    storage: str = ""  # results folder (local or a mounted shared FS); "" = see launch.study_dir
    max_failures: int = 1  # retries of a failed trial (Tune) and of a failed worker group (Train)
    asha: dict | None = None  # e.g. {"metric": "eval_loss", "grace_period": 100}; None = full runs
    driver_resources: dict = field(default_factory=dict)  # custom Ray resources for each trial
    keep_forks: bool = False  # keep shared-prefix checkpoints after every branch has finished

    def validate(self) -> SweepSpec:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", self.name):
            raise SpecError(f"name: {self.name!r} must be letters, digits, '_', '-' or '.'")
        if not isinstance(self.base, TrialSpec):
            raise SpecError("base: must be a TrialSpec (placement goes in run=RunConfig(...))")
        if not isinstance(self.run, RunConfig):
            raise SpecError("run: must be a RunConfig")
        if not isinstance(self.grid, dict):
            raise SpecError("grid: must be a dict of dotted field -> list of values")
        for key, values in self.grid.items():
            _check_key(key, "grid")
            if not isinstance(values, list | tuple) or len(values) == 0:
                raise SpecError(f"grid.{key}: must be a non-empty list of values")
        if not isinstance(self.points, list | tuple):
            raise SpecError("points: must be a list of dicts (dotted field -> value)")
        for i, p in enumerate(self.points):
            if not isinstance(p, dict):
                raise SpecError(f"points[{i}]: must be a dict of dotted field -> value")
            for key in p:
                _check_key(key, f"points[{i}]")
            _check_overlaps(list(p), f"points[{i}]")
        _check_overlaps(list(self.grid), "grid")
        if not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise SpecError("max_failures: must be an int >= 0")
        if not isinstance(self.keep_forks, bool):
            raise SpecError(f"keep_forks: must be true or false, got {self.keep_forks!r}")
        if self.asha is not None:
            unknown = set(self.asha) - {"metric", "grace_period", "reduction_factor"}
            if unknown:
                raise SpecError(
                    f"asha.{sorted(unknown)[0]}: unknown; allowed: metric, "
                    "grace_period, reduction_factor"
                )
        if not isinstance(self.driver_resources, dict):
            raise SpecError("driver_resources: must be a dict of Ray resource -> amount")
        return self


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The crossed grid, then the explicit points (the base trial alone if there are none)."""
    keys = list(spec.grid)
    combos = itertools.product(*(spec.grid[k] for k in keys)) if keys else []
    points = [dict(zip(keys, c, strict=True)) for c in combos]
    points += [dict(p) for p in spec.points]
    return points or [{}]


def expand(spec: SweepSpec) -> list[Trial]:
    """All trials of a sweep, validated, in a stable order with stable, unique names."""
    spec.validate()
    trials: list[Trial] = []
    seen: dict[str, dict] = {}
    for point in grid_points(spec):
        trial = make_trial(spec, point)
        first = seen.setdefault(trial.content_hash(), point)
        if first is not point:
            raise SpecError(
                f"grid: points {_where(first)} and {_where(point)} give the same trial "
                "(identical identity); remove one, or make them differ in what they measure"
            )
        trials.append(trial)
    _check_base_not_overridden(spec, list(spec.grid))
    return trials


def make_trial(spec: SweepSpec, point: dict[str, Any]) -> Trial:
    """The validated Trial of one grid point (errors name the point)."""
    try:
        trial = _apply(spec, point)
        return trial.validate()
    except SpecError as e:
        raise SpecError(f"{e} (grid point {_where(point)})" if point else str(e)) from None


def _where(point: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in point.items()) or "{}"


def _check_key(key: str, where: str) -> None:
    if not isinstance(key, str):
        raise SpecError(f"{where}: keys must be dotted field names, got {key!r}")
    if key in BUDGET_KEYS or key in _NESTED or key in RUN_FIELDS:
        return
    parts = key.split(".")
    cls = TrialSpec
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names or (cls is TrialSpec and part in ("name", "study", "grid")):
            allowed = [n for n in names if n not in ("name", "study", "grid")]
            if cls is TrialSpec:
                allowed += list(RUN_FIELDS) + list(BUDGET_KEYS)
            raise SpecError(f"{where}.{key}: unknown field {part!r}; allowed: {', '.join(allowed)}")
        sub = _NESTED.get(part) if cls is TrialSpec else None
        if part == "params" and i < len(parts) - 1:
            return  # free-form schedule/data params, checked when each trial validates
        if sub is None:
            if i != len(parts) - 1:
                raise SpecError(f"{where}.{key}: {part!r} has no sub-fields")
            return
        cls = sub


def _check_overlaps(keys: list[str], where: str) -> None:
    """One value per field: `schedule` with `schedule.name`, or `tokens` with `total_steps`,
    would let one silently win over the other."""
    for a, b in itertools.combinations(dict.fromkeys(keys), 2):
        if a.startswith(b + ".") or b.startswith(a + "."):
            raise SpecError(f"{where}: {a!r} and {b!r} both set {min(a, b, key=len)!r}; keep one")
    steps = [k for k in dict.fromkeys(keys) if k in STEP_KEYS]
    if len(steps) > 1:
        raise SpecError(
            f"{where}: {' and '.join(map(repr, steps))} both set the step count; keep one"
        )


def _check_base_not_overridden(spec: SweepSpec, keys: list[str]) -> None:
    """A base that sets a field away from its default while the crossed grid sweeps the same
    field: the base value is never used (the grid silently wins). Ask for one. (Explicit
    `points` may override a base default: that is what the base is for.)"""
    defaults = {"": (TrialSpec(), spec.base), "run": (RunConfig(), spec.run)}
    for key in dict.fromkeys(keys):
        if key in BUDGET_KEYS or ".params." in f".{key}." or key.endswith(".params"):
            continue
        default, base = defaults["run" if key in RUN_FIELDS else ""]
        for part in key.split("."):
            default, base = getattr(default, part, None), getattr(base, part, None)
        if base is not None and base != default and not dataclasses.is_dataclass(base):
            where = "run" if key in RUN_FIELDS else "base"
            raise SpecError(
                f"grid.{key}: the {where} also sets it ({_short(base)}); the grid would override "
                f"it silently: remove it from the {where} or from the grid"
            )


def _apply(spec: SweepSpec, point: dict[str, Any]) -> Trial:
    d, run = spec.base.to_dict(), spec.run.to_dict()
    for key, value in point.items():
        if key in BUDGET_KEYS:
            continue
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        node, parts = (run if key in RUN_FIELDS else d), key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = dict(value) if isinstance(value, dict) else value
    d |= {"study": spec.name, "grid": {k: _plain(v) for k, v in point.items()}}
    trial = TrialSpec.from_dict(d)
    if "exposures" in point:
        trial = _with_exposures(trial, point["exposures"])
    if "tokens" in point:
        trial = _with_tokens(trial, point["tokens"])
    trial = dataclasses.replace(trial, name=trial_name(trial, point))
    return Trial(trial, RunConfig.from_dict(run))


def _plain(v: Any) -> Any:
    """A grid value as plain data (dataclasses become dicts), as trial.json stores it."""
    return dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v


def _seq_len(trial: TrialSpec) -> int:
    if trial.seq_len:
        return trial.seq_len
    from scalelab import data

    return data.build(trial.data.name, seed=trial.data.seed, **trial.data.params).seq_len


def _with_tokens(trial: TrialSpec, tokens: int) -> TrialSpec:
    """Budget in tokens -> optimizer steps (rounded down; at least one)."""
    if not isinstance(tokens, int | float) or isinstance(tokens, bool) or not tokens > 0:
        raise SpecError(f"tokens: must be a positive number of training tokens, got {tokens!r}")
    steps = max(1, int(tokens // (trial.batch_size * _seq_len(trial))))
    return dataclasses.replace(trial, total_steps=steps)


def _with_exposures(trial: TrialSpec, exposures: float) -> TrialSpec:
    """Knowledge data: `exposures` passes over every person (Allen-Zhu & Li 2024 use 100, 1000)."""
    from scalelab import data

    if not isinstance(exposures, int | float) or isinstance(exposures, bool) or not exposures > 0:
        raise SpecError(f"exposures: must be a positive number, got {exposures!r}")
    src = data.build(trial.data.name, seed=trial.data.seed, **trial.data.params)
    if not getattr(src, "tokens_per_epoch", None):
        raise SpecError(
            f"exposures: data source {trial.data.name!r} has no people to expose; "
            "use a knowledge source (bios, biod) or set `tokens`"
        )
    return _with_tokens(trial, int(exposures * src.tokens_per_epoch))


def trial_name(trial: TrialSpec, point: dict[str, Any]) -> str:
    """Readable and stable: N150K-B32-lr3e-3-cosine-s0 (+ other identity grid keys) + hash.
    Placement keys (RunConfig fields) never enter the name."""
    parts = [
        f"N{trial.model.label}",
        f"B{trial.batch_size}",
        f"lr{_short(trial.optim.lr)}",
        trial.schedule.name,
        f"s{trial.seed}",
    ]
    for key, value in point.items():
        if key in _IN_NAME or key in RUN_FIELDS:
            continue
        if isinstance(value, dict) or dataclasses.is_dataclass(value):
            continue  # structured values show up in the hash
        label = _SHORT.get(key, key.split(".")[-1])
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
    if isinstance(v, ScheduleSpec):
        return v.label
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


def lr_batch_neighbourhood(
    lr: float, batch_size: int, tokens: float, seq_len: int, factors=(0.5, 1.0, 2.0)
) -> list[dict]:
    """Points around a peak LR and a batch size (sequences) at a budget of `tokens`: the LR
    times each factor (3 significant figures, so trial names stay readable) crossed with the
    batch size times each factor (rounded, at least 1), each with total_steps = tokens //
    (batch_size x seq_len) (at least 1, the rule of the `tokens` key). LR-major order; with
    the default factors the fifth point is (lr, batch_size) itself."""
    points = []
    for fl in factors:
        for fb in factors:
            b = max(1, round(batch_size * fb))
            points.append(
                {
                    "optim.lr": float(f"{lr * fl:.3g}"),
                    "batch_size": b,
                    "total_steps": max(1, int(tokens // (b * seq_len))),
                }
            )
    return points
