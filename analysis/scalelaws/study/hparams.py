"""A hyperparameter fit (scalelaws.hparams, docs/laws.md §9) read against a study: the runs it
fits and the tables that the CLI, the HTML report, the notebook and the W&B analysis run show.
Nothing is fitted here.

    runs = study_runs(sl.load_study("results/hparams"))   # completed runs, B in tokens
    fit = sl.fit_hparams(runs.frame, **runs.columns)
    cells_table(fit), laws_table(fit)                     # η*, B*, L* per cell; the laws
    beside_cbs(fit, sl.CBSResult.load("CBS.json"), runs.seq_len)  # B* next to the CBS

A study's runs table (docs/concepts.md "Results tables") has N = `params` (non-embedding), D =
`tokens` (the trial's budget: total_steps·batch_size·seq_len), the peak LR `lr`, `batch_size`
in sequences and `seq_len`. The fit reads B in tokens per optimizer step (batch_size·seq_len),
the unit of DeepSeek LLM's and Step Law's B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from scalelaws.study.load import Study

BATCH_UNIT = "tokens per optimizer step"
STUDY_COLUMNS = {"params": "params", "tokens": "tokens", "lr": "lr", "batch": "batch_tokens"}
NEEDED = ("status", "params", "tokens", "lr", "batch_size", "seq_len", "seed")


@dataclass(frozen=True)
class StudyRuns:
    """The runs a study gives the hyperparameter fit. frame: its completed runs with a finite
    loss, plus `batch_tokens` = batch_size·seq_len; columns: the keyword arguments of
    fit_hparams naming them (and batch_unit); left_out: {reason: runs}; seq_len: the runs' one
    sequence length (None when they have several)."""

    frame: pl.DataFrame
    columns: dict[str, str]
    left_out: dict[str, int] = field(default_factory=dict)
    seq_len: int | None = None

    def lines(self) -> list[str]:
        """One line saying which runs the fit leaves out and why (none when it uses all)."""
        if not self.left_out:
            return []
        parts = ", ".join(f"{n} {why}" for why, n in self.left_out.items())
        return [f"left out {sum(self.left_out.values())} run(s): {parts}"]


def study_runs(
    study: Study, *, loss: str = "final_eval_loss", where: str | None = None
) -> StudyRuns:
    """The study's completed runs with a finite `loss`, those matching the SQL `where` when
    given, with `batch_tokens`. ValueError (one line) for a runs table without the columns,
    a bad `where`, or no run left."""
    runs = study.runs
    missing = [c for c in (*NEEDED, loss) if c not in runs.columns]
    if missing:
        raise ValueError(
            f"{study.root}: runs.parquet has no column(s) {missing} (a study written by "
            "scalelab has them; for another table give it as a file with column names)"
        )
    left: dict[str, int] = {}
    if where:
        try:
            chosen = runs.filter(pl.sql_expr(where))
        except Exception as e:  # polars raises several error types for a bad expression
            raise ValueError(f"where: {where!r} is not a filter of runs.parquet: {e}") from None
        left["not matching the filter"] = runs.height - chosen.height
        runs = chosen
    for status, n in (
        runs.filter(pl.col("status") != "completed")["status"].value_counts(sort=True).iter_rows()
    ):
        left[str(status)] = int(n)
    runs = runs.filter(pl.col("status") == "completed")
    ok = pl.col(loss).cast(pl.Float64).is_finite().fill_null(False)
    left[f"completed without a finite {loss}"] = runs.height - runs.filter(ok).height
    runs = runs.filter(ok).with_columns(
        batch_tokens=pl.col("batch_size").cast(pl.Int64) * pl.col("seq_len").cast(pl.Int64)
    )
    if runs.height == 0:
        raise ValueError(
            f"{study.root}: no completed run with a finite {loss} to fit"
            + (f" (of those matching {where!r})" if where else "")
        )
    seq = runs["seq_len"].unique()
    columns = STUDY_COLUMNS | {"loss": loss, "seed": "seed", "batch_unit": BATCH_UNIT}
    kept = {k: v for k, v in left.items() if v}
    return StudyRuns(runs, columns, kept, int(seq[0]) if seq.len() == 1 else None)


def _iv(v) -> tuple[float | None, float | None]:
    return (None, None) if not v else (_num(v[0]), _num(v[1]))


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def cells_table(fit) -> pl.DataFrame:
    """One row per (N, D) cell: η*, B* and L* with the 95% bootstrap intervals of η* and B*,
    each axis's status, and the codes of the cell's diagnostics (`flags`)."""
    rows = []
    for c in fit.cells:
        flags = sorted({d.code for d in fit.diagnostics if d.subject == c["label"]})
        lr_lo, lr_hi = _iv(c.get("lr_interval"))
        b_lo, b_hi = _iv(c.get("batch_interval"))
        rows.append(
            {
                "cell": c["label"],
                "N": _num(c["params"]),
                "D": _num(c["tokens"]),
                "lr*": _num(c["lr_opt"]),
                "lr* lo": lr_lo,
                "lr* hi": lr_hi,
                "lr status": c["lr_status"],
                "B*": _num(c["batch_opt"]),
                "B* lo": b_lo,
                "B* hi": b_hi,
                "B status": c["batch_status"],
                "L*": _num(c["loss_opt"]),
                "flags": ", ".join(flags),
            }
        )
    return pl.DataFrame(rows, schema=_schema(rows, ("cell", "lr status", "B status", "flags")))


def laws_table(fit) -> pl.DataFrame:
    """One row per (law, variable): the exponent with its 95% interval, the law's coefficient,
    r², residual sd σ of ln y and the number of cells, e.g. lr~ND, N: α in η* = a·N^α·D^β."""
    rows = []
    order = ("lr~ND", "lr~D", "lr~N", "lr~C", "batch~ND", "batch~D", "batch~N", "batch~C")
    for key in sorted(fit.laws, key=lambda k: order.index(k) if k in order else len(order)):
        law = fit.laws[key]
        for var in law.get("vars") or law["exponents"]:
            e = law["exponents"][var]
            lo, hi = law["exponent_intervals"][var]
            rows.append(
                {
                    "law": key,
                    "variable": var,
                    "exponent": _num(e),
                    "95% lo": _num(lo),
                    "95% hi": _num(hi),
                    "coef": _num(law["coef"]),
                    "r2": _num(law["r2"]),
                    "sigma": _num(law["sigma"]),
                    "cells": int(law["n"]),
                }
            )
    return pl.DataFrame(rows, schema=_schema(rows, ("law", "variable"), ints=("cells",)))


def _schema(rows, text: tuple[str, ...], ints: tuple[str, ...] = ()) -> dict[str, Any] | None:
    if not rows:
        return None
    return {k: pl.String if k in text else pl.Int64 if k in ints else pl.Float64 for k in rows[0]}


def curvature_text(fit) -> str:
    """The pooled curvature as ΔL ≈ c_η·δ_η² ± h·δ_η·δ_B + c_B·δ_B² (δ in natural-log units)."""
    p = fit.params
    terms = [(p["curvature.lr"], "δ_η²"), (p["curvature.cross"], "δ_η·δ_B")]
    terms.append((p["curvature.batch"], "δ_B²"))
    text = "ΔL ≈ "
    for i, (v, name) in enumerate(terms):
        v = _num(v)
        neg = v is not None and v < 0
        sign = ("−" if neg else "") if i == 0 else (" − " if neg else " + ")
        text += sign + ("nan" if v is None else f"{abs(v):.4g}") + f"·{name}"
    return text


def beside_cbs(fit, cbs, seq_len: int | None = None) -> pl.DataFrame:
    """Per hparams cell, B* beside the critical batch size of the CBS fit's group at the same
    (N, D) (Zhang et al. 2025: both grow with D): CBS and B_crit in sequences, CBS in the fit's
    batch unit (× seq_len when B* is in tokens), and B*/CBS. A cell without a CBS group at its
    (N, D) keeps its row with empty CBS columns."""
    unit = str(fit.info.get("batch_unit") or BATCH_UNIT)
    per_seq = seq_len if unit.startswith("token") else 1 if unit.startswith("sequence") else None
    rows = []
    for c in fit.cells:
        g = _group(cbs, c["params"], c["tokens"])
        cbs_seq = _num(g.cbs) if g is not None else None
        cbs_unit = cbs_seq * per_seq if cbs_seq is not None and per_seq else None
        b = _num(c["batch_opt"])
        rows.append(
            {
                "cell": c["label"],
                "D": _num(c["tokens"]),
                "B*": b,
                "B status": c["batch_status"],
                "CBS group": g.group if g is not None else None,
                "CBS (sequences)": cbs_seq,
                "B_crit (sequences)": _num(g.b_crit) if g is not None else None,
                "CBS (B* unit)": cbs_unit,
                "B*/CBS": b / cbs_unit if b and cbs_unit else None,
            }
        )
    return pl.DataFrame(rows, schema=_schema(rows, ("cell", "B status", "CBS group")))


def _group(cbs, n: float, d: float):
    for g in cbs.groups:
        if g.params and g.tokens and np.isclose(g.params, n) and np.isclose(g.tokens, d):
            return g
    return None


def growth_with_d(fit, cbs) -> pl.DataFrame:
    """The D exponent of B* (its (N, D) or D form) and of the CBS (its D law, else the joint
    one's), with their 95% intervals: how each grows with the data size."""
    rows = []
    for key in ("batch~ND", "batch~D"):
        if key in fit.laws:
            lo, hi = fit.laws[key]["exponent_intervals"]["D"]
            e = fit.laws[key]["exponents"]["D"]
            rows.append(("B* (hparams fit)", key, _num(e), _num(lo), _num(hi)))
            break
    tokens, joint = cbs.scaling.get("tokens"), cbs.scaling.get("joint")
    if tokens is not None:
        lo, hi = tokens.exponent_interval
        rows.append(("CBS (critical batch fit)", "cbs~tokens", tokens.exponent, lo, hi))
    elif joint is not None:
        lo, hi = joint.b_interval
        rows.append(("CBS (critical batch fit)", "cbs~joint (D)", joint.b, lo, hi))
    schema = {"quantity": pl.String, "law": pl.String, "D exponent": pl.Float64}
    schema |= {"95% lo": pl.Float64, "95% hi": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")
