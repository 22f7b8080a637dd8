"""Critical batch size from a steps-to-target table or a study's tables (docs/laws.md §2).

McCandlish et al. 2018 (arXiv 1812.06162): S(B) = S_min + E_min/B, B_crit = E_min/S_min
(eq. 2.11–2.12). Zhang et al., ICLR 2025 (arXiv 2410.21676): T(B) = fewest steps to a target
loss, minimised over the LR sweep; CBS = 1.2·B_ref + E_min/(5·S_min) (20% over linear scaling).
Per group (one (N, D) pair): the fit and 95% bootstrap intervals (batchsize.fit_cbs_table);
then CBS and B_crit as power laws of N and D (OLS on logs, statsmodels intervals).

    res = fit_cbs("steps.csv", ref_batch=256)                   # group, params, batch_size, ...
    res = fit_cbs(study=load_study("results/cbs"), loss="ewa_eval_loss", noise_batch=64)
    res.group("85M").cbs, res.scaling["params"].exponent, res.predict(512, "85M")

CBS.json (res.to_json) keeps the layout `scalelab fit cbs` has always written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.powerlaw import scaling_law_from_dict
from scalelaws.core.result import Result
from scalelaws.critical_batch import checks as cbscheck
from scalelaws.critical_batch import law as bs
from scalelaws.critical_batch.steps import check_columns, noise_scale_at_target, steps_to_target
from scalelaws.io import jsonable
from scalelaws.study.load import Study, as_study

PARAMS_UNIT = 1e6  # N in millions of parameters (Zhang et al.: CBS ≈ 93.2·N^0.468)
TOKENS_UNIT = 1e9  # D in billions of tokens
UNITS = {
    "batch_size": "sequences per optimizer step",
    "steps": "optimizer steps",
    "params_unit": PARAMS_UNIT,
    "tokens_unit": TOKENS_UNIT,
}
_INFO_KEYS = ("n_boot", "seed", "source", "input_sha256", "loss_col", "noise_batch", "units")


@dataclass(frozen=True, eq=False)
class CBSResult(Result):
    """Per-group T(B) fits and the CBS / B_crit scaling laws.

    params / intervals: `cbs[G]`, `b_crit[G]`, `s_min[G]`, `e_min[G]` per group G, and the
    scaling exponents `cbs~params`, `cbs~tokens`, `cbs~joint.a`, `cbs~joint.b` (same for
    `b_crit~…`). metrics: `rmse_log_steps[G]` and `r2[cbs~params]`, …. info: n_boot, seed,
    source, input_sha256, units (and loss_col, noise_batch for study tables).
    """

    groups: tuple[bs.CBSFit, ...]
    scaling: dict[str, Any] = field(default_factory=dict)  # PowerLaw / JointPowerLaw of CBS
    scaling_b_crit: dict[str, Any] = field(default_factory=dict)  # the same for B_crit
    ref_batch: float = 0.0
    steps: tuple[dict, ...] = ()  # steps-to-target rows (study tables only)
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def group(self, name: str) -> bs.CBSFit:
        for g in self.groups:
            if g.group == name:
                return g
        raise ValueError(f"group: no {name!r}; groups are {[g.group for g in self.groups]}")

    def predict(self, batch_size, group: str) -> np.ndarray:
        """Steps to the target of `group` at `batch_size`: S_min + E_min/B."""
        return self.group(group).predict(batch_size)

    def prediction(self, params, tokens=None, *, quantity: str = "cbs", level: float = 0.9):
        """CBS (or B_crit) at model size(s) `params` (and `tokens`) with `level` prediction
        intervals; steps_prediction: T(B) of a new size (scalelaws.critical_batch.predict)."""
        from scalelaws.critical_batch.predict import scaling_prediction

        return scaling_prediction(self.groups, params, tokens, quantity=quantity, level=level)

    def steps_prediction(self, params: float, batch_sizes, *, level: float = 0.9):
        from scalelaws.critical_batch.predict import steps_prediction

        return steps_prediction(self.groups, params, batch_sizes, level=level)

    def extrapolation(self, batch_size, group: str) -> tuple[Diagnostic, ...]:
        """EXTRAPOLATION when `batch_size` lies outside the group's fitted batch sizes."""
        from scalelaws.core.checks import extrapolation

        g = self.group(group)
        return tuple(
            d
            for b in np.atleast_1d(batch_size)
            for d in extrapolation(
                f"batch_size of {group}", float(b), min(g.batch_sizes), max(g.batch_sizes)
            )
        )

    def steps_frame(self) -> pl.DataFrame:
        """The steps-to-target table (study tables; empty for a given table)."""
        return pl.DataFrame(list(self.steps)) if self.steps else pl.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        """CBS.json: the layout `scalelab fit cbs` writes, plus params/intervals/diagnostics."""
        doc: dict[str, Any] = {"kind": "cbs"}
        doc |= {k: self.info[k] for k in _INFO_KEYS if k in self.info}
        if self.steps:
            doc["steps"] = list(self.steps)
        doc |= {
            "ref_batch": self.ref_batch,
            "groups": [g.to_dict() for g in self.groups],
            "scaling": {k: v.to_dict() for k, v in self.scaling.items()},
            "scaling_b_crit": {k: v.to_dict() for k, v in self.scaling_b_crit.items()},
            "warnings": [d.message for d in self.diagnostics if d.severity != "info"],
            **self.convention_dict(),
        }
        return jsonable(doc)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CBSResult:
        """From CBS.json, including files written before params/diagnostics existed."""
        if "groups" not in d:
            raise ValueError("not a CBS.json (needs 'groups'); write one with `scalelab fit cbs`")
        groups = tuple(bs.CBSFit.from_dict(g) for g in d["groups"])
        scaling = {k: scaling_law_from_dict(v) for k, v in d.get("scaling", {}).items()}
        scaling_bc = {k: scaling_law_from_dict(v) for k, v in d.get("scaling_b_crit", {}).items()}
        diags = tuple(Diagnostic.from_dict(x) for x in d.get("diagnostics", ()))
        if "diagnostics" not in d:
            diags = tuple(_diagnostic(w) for w in d.get("warnings", ()))
        info = d.get("info") or {k: d[k] for k in _INFO_KEYS if k in d}
        params, intervals, metrics = _summary(groups, scaling, scaling_bc)
        return cls(
            groups=groups,
            scaling=scaling,
            scaling_b_crit=scaling_bc,
            ref_batch=d.get("ref_batch", 0.0),
            steps=tuple(d.get("steps", ())),
            params=params,
            intervals=intervals,
            metrics=metrics,
            diagnostics=diags,
            info=info,
        )


def fit_cbs(
    table: pl.DataFrame | str | Path | None = None,
    *,
    study: Study | str | Path | None = None,
    target: float | None = None,
    ref_batch: float | None = None,
    loss: str = "eval_loss",
    noise_batch: int | None = None,
    n_boot: int = 500,
    seed: int = 0,
    force: bool = False,
) -> CBSResult:
    """CBS per group and its scaling, from exactly one of:

    table: steps to target (frame or CSV): group, params, batch_size, steps_to_target,
        optional tokens (D) and reached.
    study: runs + curves tables (a Study or its folder): T(B) is measured from the curves
        (`loss` column; target per group = best final loss at ref_batch unless `target`), and
        B_simple is read where the run at `noise_batch` (default ref_batch) reaches the target.
    ref_batch: B_ref of the 20% CBS (default: the smallest batch size). n_boot >= 200.
    force: fit the CBS / B_crit scaling laws on fewer than 4 groups (else refused, with a
        TOO_FEW_POINTS diagnostic saying why).
    """
    if (table is None) == (study is None):
        raise ValueError("give exactly one of table (steps to target) or study (runs + curves)")
    if table is not None and target is not None:
        raise ValueError("target: applies to study tables only; the table already has steps")
    _check_options(target, ref_batch, noise_batch, n_boot)
    info: dict[str, Any] = {"n_boot": n_boot, "seed": seed}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if table is not None:
            steps, src = _read_table(table)
            check_table(steps)
            info |= src
            extras: dict[str, dict] = {}
        else:
            steps, extras, src, ref_batch = _study_steps(
                as_study(study), target, ref_batch, loss, noise_batch
            )
            info |= src
        ref_batch = int(steps["batch_size"].min()) if ref_batch is None else ref_batch
        fits = bs.fit_cbs_table(steps, ref_batch, n_boot=n_boot, seed=seed)
        scaling, diags = cbscheck.scaling(fits, "cbs", PARAMS_UNIT, TOKENS_UNIT, force)
        scaling_bc, diags_bc = cbscheck.scaling(fits, "b_crit", PARAMS_UNIT, TOKENS_UNIT, force)
    fits = tuple(dataclasses.replace(f, **extras.get(f.group, {})) for f in fits)
    diags = tuple(_diagnostic(str(w.message)) for w in caught) + diags + diags_bc
    diags += tuple(d for f in fits for d in cbscheck.group_diagnostics(f))
    if study is not None:
        diags += cbscheck.lr_edges(steps)
    params, intervals, metrics = _summary(fits, scaling, scaling_bc)
    return CBSResult(
        groups=fits,
        scaling=scaling,
        scaling_b_crit=scaling_bc,
        ref_batch=ref_batch,
        steps=tuple(steps.to_dicts()) if study is not None else (),
        params=params,
        intervals=intervals,
        metrics=metrics,
        diagnostics=diags,
        info=info | {"units": UNITS, "force": force},
    )


def _read_table(table) -> tuple[pl.DataFrame, dict]:
    if isinstance(table, pl.DataFrame):
        digest = hashlib.sha256(table.write_csv().encode()).hexdigest()
        return table, {"source": "(frame)", "input_sha256": digest}
    path = Path(table)
    if not path.is_file():
        raise ValueError(f"table: no file at {path}; give a CSV of steps to target")
    src = {"source": str(path), "input_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    try:
        frame = pl.read_csv(path)
    except pl.exceptions.NoDataError:
        frame = pl.DataFrame()
    if frame.height == 0:
        raise ValueError(f"{path}: no rows; give {TABLE_COLUMNS}, one row per (group, batch size)")
    return frame, src


TABLE_COLUMNS = "columns group, params, batch_size, steps_to_target[, tokens, reached]"


def _check_options(target, ref_batch, noise_batch, n_boot) -> None:
    for name, v in (("target", target), ("ref_batch", ref_batch), ("noise_batch", noise_batch)):
        if v is not None and not (isinstance(v, int | float) and np.isfinite(v) and v > 0):
            what = "a loss in nats" if name == "target" else "a batch size in sequences"
            raise ValueError(f"{name}={v}: must be {what}, a finite number > 0")
    if n_boot < 200:
        raise ValueError(f"n_boot={n_boot}: use at least 200 bootstrap resamples per group")


def check_table(steps: pl.DataFrame) -> None:
    """One-line ValueErrors for a steps table: missing or non-numeric columns, no rows, a
    params / batch_size / tokens that is missing, not finite or <= 0, steps <= 0 (row named).
    steps_to_target null, NaN or inf means "not reached" (as reached = false)."""
    check_columns(steps, ("group", "params", "batch_size", "steps_to_target"), "table")
    if steps.height == 0:
        raise ValueError(f"table: no rows; give {TABLE_COLUMNS}")
    for col in ("params", "batch_size", "steps_to_target", "tokens"):
        if col not in steps.columns:
            continue
        try:
            v = steps[col].cast(pl.Float64, strict=True).to_numpy()
        except pl.exceptions.PolarsError:
            raise ValueError(
                f"table: column {col} holds {steps[col].dtype}, not numbers; fix that column"
            ) from None
        bad = ~(v > 0) if col == "steps_to_target" else ~(np.isfinite(v) & (v > 0))
        if col == "steps_to_target":
            bad &= np.isfinite(v)  # null / NaN / inf: not reached
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"table: {col} = {v[i]} in row {i + 1} (group {steps['group'][i]}): must be a "
                "finite number > 0"
                + (" (tokens: the group's data size D)" if col == "tokens" else "")
            )


def _study_steps(study: Study, target, ref_batch, loss, noise_batch):
    """Steps-to-target rows of a study, per-group extras (target, B_simple), info, ref_batch."""
    runs, curves = study.runs, study.curves
    if ref_batch is None:
        ref_batch = int(runs["batch_size"].min())
    steps = steps_to_target(curves, runs, target, ref_batch, loss)
    nb = noise_batch or ref_batch
    noise = noise_scale_at_target(curves, steps, nb)
    extras = {}
    for group in steps["group"].unique(maintain_order=True).to_list():
        nz = noise.filter(pl.col("group") == group)
        extras[group] = {
            "target": steps.filter(pl.col("group") == group)["target"][0],
            "noise_scale": nz["noise_scale"][0] if nz.height else None,
            "noise_scale_step": nz["step"][0] if nz.height else None,
        }
    digest = study.sha256() or hashlib.sha256(runs.write_csv().encode()).hexdigest()
    info = {"source": str(study.root), "input_sha256": digest, "loss_col": loss, "noise_batch": nb}
    return steps, extras, info, ref_batch


def _summary(fits, scaling, scaling_bc):
    """params / intervals / metrics of the CBSResult convention (see its docstring)."""
    params, intervals, metrics = {}, {}, {}
    for f in fits:
        for q in ("cbs", "b_crit", "s_min", "e_min"):
            params[f"{q}[{f.group}]"] = getattr(f, q)
            intervals[f"{q}[{f.group}]"] = tuple(getattr(f, f"{q}_interval"))
        metrics[f"rmse_log_steps[{f.group}]"] = float(np.sqrt(np.mean(np.square(f.residuals))))
    for q, laws in (("cbs", scaling), ("b_crit", scaling_bc)):
        for key, law in laws.items():
            if key == "joint":
                for k in ("a", "b"):
                    params[f"{q}~joint.{k}"] = getattr(law, k)
                    intervals[f"{q}~joint.{k}"] = tuple(getattr(law, f"{k}_interval"))
            else:
                params[f"{q}~{key}"] = law.exponent
                intervals[f"{q}~{key}"] = tuple(law.exponent_interval)
            metrics[f"r2[{q}~{key}]"] = law.r2
    return params, intervals, metrics


def _diagnostic(message: str) -> Diagnostic:
    if "not reached" in message:
        action = "train those batch sizes longer or raise the target"
        return Diagnostic("TARGET_NOT_REACHED", "warning", message, action)
    if "vary together" in message:  # written by versions before cbscheck: an info now
        return Diagnostic("FIT_SKIPPED", "info", message, "vary N at fixed D and D at fixed N")
    return Diagnostic("FIT_WARNING", "warning", message, "read the message")
