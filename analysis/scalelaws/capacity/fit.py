"""Knowledge capacity of a bioS / bioD study: bits per parameter (docs/laws.md §3).

Allen-Zhu & Li, "Physics of Language Models: Part 3.3" (arXiv 2404.05405): with ~1000
exposures per fact a GPT stores ≈ 2 bits per parameter; int8 keeps them, int4 loses more than
half. Per trial (runs with the `knowledge.*` columns of knowledge_eval=True trials): bits from
p1/p2/p3 (scalelaws.capacity.law), P = non-embedding + used embedding rows, R = bits/P,
R_max = max bits/P. The law bits ≈ min(R·P, max bits) is fitted by OLS through the origin on
the capacity-bound trials (bits < bound_frac·max), per exposure count; `ratio` is the fit at the
largest exposure count; `quantized` the same for the int8 / int4 copies on the same trials.

    res = fit_capacity("results/capacity")                  # or a runs frame, or a Study
    res.params["R"], res.intervals["R"], res.trials[0]["ratio"], res.predict(2e4, 28_500)
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaws.capacity import checks as capcheck
from scalelaws.capacity.law import capacity_law, fit_ratio, knowledge_bits, knowledge_max_bits
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result
from scalelaws.io import jsonable
from scalelaws.study.load import RUNS, Study

QUANT = ("int8", "int4")
QUANT_METHOD = "per-channel (per output row) symmetric round-to-nearest; norm gains stay fp32"
_META = ("n_people", "n0", "K", "C", "D", "L", "T", "S0")
UNITS = {
    "bits": "bits (docs/laws.md §3 lower bound from p1/p2/p3 in nats)",
    "params": "non-embedding + used_token_ids × d_model (tied embedding counted once)",
    "ratio": "bits / params",
    "exposures": "passes over every person (training tokens / tokens per pass)",
}


@dataclass(frozen=True, eq=False)
class CapacityResult(Result):
    """Per-trial bits and the capacity ratio R (docs/laws.md §3).

    params / intervals: `R` (largest exposure count), `R_non_embedding`, `R_int8`, `R_int4`, and
    `R[E]` per exposure count E. metrics: `peak_R`, `n_bound`. info: source, input_sha256,
    units.
    """

    trials: tuple[dict, ...]
    ratio: dict[str, Any] = field(default_factory=dict)
    groups: tuple[dict, ...] = ()
    quantized: dict[str, Any] = field(default_factory=dict)
    bound_frac: float = 0.9
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, params, max_bits) -> np.ndarray | float:
        """Bits ≈ min(R·P, max bits) with the fitted R (Allen-Zhu & Li)."""
        if self.params.get("R") is None:
            raise ValueError("R: not fitted (too few capacity-bound trials); see diagnostics")
        return capacity_law(params, self.params["R"], max_bits)

    def prediction(self, params, max_bits, *, exposures=None, level: float = 0.9):
        """predict(params, max_bits) with `level` intervals (scalelaws.capacity.predict)."""
        from scalelaws.capacity.predict import capacity_prediction

        return capacity_prediction(self, params, max_bits, exposures=exposures, level=level)

    def extrapolation(self, params) -> tuple[Diagnostic, ...]:
        """EXTRAPOLATION when P lies outside the P range of the trials R was fitted on."""
        from scalelaws.core.checks import extrapolation

        bound = set(self.ratio.get("bound_trials") or ())
        ps = [t["params"] for t in self.trials if t["name"] in bound]
        if not ps:
            return ()
        return tuple(
            d
            for p in np.atleast_1d(params)
            for d in extrapolation("params P", float(p), min(ps), max(ps))
        )

    def to_dict(self) -> dict[str, Any]:
        """CAP.json: the layout `scalelab fit capacity` writes, plus params/diagnostics."""
        doc = {"kind": "capacity", "source": self.info.get("source", "")}
        doc |= {
            "input_sha256": self.info.get("input_sha256", ""),
            "bound_frac": self.bound_frac,
            "units": self.info.get("units", UNITS),
            "trials": list(self.trials),
            "ratio": self.ratio,
            "groups": list(self.groups),
            "quantized": self.quantized,
            "warnings": [d.message for d in self.diagnostics if d.code == "FIT_WARNING"],
            **self.convention_dict(),
        }
        return jsonable(doc)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CapacityResult:
        """From CAP.json / capacity.json, including files written before params existed."""
        if "trials" not in d or "ratio" not in d:
            raise ValueError("not a capacity JSON (needs 'trials' and 'ratio')")
        groups = tuple(d.get("groups", ()))
        diags = tuple(Diagnostic.from_dict(x) for x in d.get("diagnostics", ()))
        if "diagnostics" not in d:
            diags = _group_diagnostics(groups) + _warning_diagnostics(d.get("warnings", ()))
        info = d.get("info") or {k: d[k] for k in ("source", "input_sha256", "units") if k in d}
        params, intervals, metrics = _summary(d["ratio"], groups, d.get("quantized", {}))
        return cls(
            trials=tuple(d["trials"]),
            ratio=d["ratio"],
            groups=groups,
            quantized=d.get("quantized", {}),
            bound_frac=d.get("bound_frac", 0.9),
            params=params,
            intervals=intervals,
            metrics=metrics,
            diagnostics=diags,
            info=info,
        )


def fit_capacity(
    runs: pl.DataFrame | Study | str | Path, bound_frac: float = 0.9
) -> CapacityResult:
    """Bits per trial and R with 95% intervals per exposure count, int8 / int4 (module doc).

    runs: a runs frame, a Study, or a study folder (its runs.parquet). bound_frac: a trial is
    capacity-bound when bits < bound_frac · max bits.
    """
    if not (isinstance(bound_frac, int | float) and 0 < bound_frac <= 1):
        raise ValueError(f"bound_frac={bound_frac}: must lie in (0, 1] (e.g. 0.9)")
    frame, info = _runs_frame(runs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trials, guessed = trial_table(frame, with_guessed=True)
        fits = fit_study(trials, bound_frac)
    diags = _group_diagnostics(fits["groups"]) + fits["diagnostics"]
    diags += _warning_diagnostics([str(w.message) for w in caught])
    if guessed:
        msg = f"exposures of {len(guessed)} trial(s) inferred from their tokens (e.g. {guessed[0]})"
        action = "collect the study with a scalelab that writes grid.exposures"
        diags += (Diagnostic("EXPOSURES_GUESSED", "info", msg, action),)
    params, intervals, metrics = _summary(fits["ratio"], fits["groups"], fits["quantized"])
    return CapacityResult(
        trials=tuple(trials),
        ratio=fits["ratio"],
        groups=tuple(fits["groups"]),
        quantized=fits["quantized"],
        bound_frac=bound_frac,
        params=params,
        intervals=intervals,
        metrics=metrics,
        diagnostics=diags,
        info=info | {"units": UNITS},
    )


def _runs_frame(runs) -> tuple[pl.DataFrame, dict]:
    if isinstance(runs, pl.DataFrame):
        digest = hashlib.sha256(runs.write_csv().encode()).hexdigest()
        return runs, {"source": "(frame)", "input_sha256": digest}
    root = runs.root if isinstance(runs, Study) else Path(runs)
    path = root / RUNS
    if not path.is_file():
        if isinstance(runs, Study):
            return _runs_frame(runs.runs)
        raise ValueError(f"{root}: no {RUNS}; run `scalelab collect {root}` first")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    frame = runs.runs if isinstance(runs, Study) else pl.read_parquet(path)
    return frame, {"source": str(root), "input_sha256": digest}


def exposures(row: dict) -> tuple[float, bool]:
    """(passes over every person, guessed?). The requested budget `grid.exposures` when the
    table has it; else guessed back from tokens: sweeps round the steps down, so a budget of E
    exposures gives tokens/pass in [E - one step, E]: the roundest E in that window (999.94
    with steps of 0.26 passes -> 1000)."""
    if row.get("grid.exposures") is not None:
        return float(row["grid.exposures"]), False
    per_epoch = row.get("knowledge.tokens_per_epoch") or (
        row["knowledge.n_people"] * row["knowledge.tokens_per_person"]
    )
    lo = row["tokens"] / per_epoch
    hi = (row["tokens"] + row["batch_size"] * row["seq_len"]) / per_epoch
    for digits in range(1, 8):
        unit = 10.0 ** (math.floor(math.log10(lo)) - digits + 1)
        e = math.ceil(lo / unit - 1e-9) * unit
        if e < hi:
            return float(f"{e:.{digits}g}"), True
    return lo, True


def trial_table(runs: pl.DataFrame, with_guessed: bool = False):
    """One dict per completed knowledge trial of a runs frame (and, with `with_guessed`, the
    names of the trials whose exposures were guessed)."""
    need = {"knowledge.p1", "knowledge.p2", "knowledge.params_used"}
    if not need <= set(runs.columns):
        raise ValueError(
            f"no knowledge columns ({', '.join(sorted(need - set(runs.columns)))} missing): "
            "train on bios/biod with knowledge_eval=True, then `scalelab collect DIR`"
        )
    out, guessed = [], []
    for r in runs.sort("trial").iter_rows(named=True):
        if r["status"] != "completed" or r.get("knowledge.p1") is None:
            continue
        t, was_guessed = _trial(r)
        out.append(t)
        if was_guessed:
            guessed.append(t["name"])
    if not out:
        raise ValueError(
            "no completed trial with knowledge measurements in runs; "
            "train with knowledge_eval=True and collect"
        )
    return (out, guessed) if with_guessed else out


def _check_row(r: dict) -> None:
    for k in ("p1", "p2", "params_used", "params_non_embedding", "n_people"):
        v = r.get(f"knowledge.{k}")
        if v is None or not math.isfinite(float(v)) or (k != "p1" and k != "p2" and v <= 0):
            raise ValueError(
                f"runs: knowledge.{k} = {v} for trial {r['trial']}: must be a finite number"
                f"{'' if k in ('p1', 'p2') else ' > 0'}; collect the study again"
            )


def _trial(r: dict) -> tuple[dict, bool]:
    """Bits, ratios and the int8 / int4 copies of one runs row."""
    _check_row(r)
    meta = {k: r[f"knowledge.{k}"] for k in _META if r.get(f"knowledge.{k}") is not None}
    meta["kind"] = r["data"]
    p, p_ne = int(r["knowledge.params_used"]), int(r["knowledge.params_non_embedding"])
    bits = float(knowledge_bits(meta, r["knowledge.p1"], r["knowledge.p2"], r["knowledge.p3"]))
    mx = knowledge_max_bits(meta)
    e, guessed = exposures(r)
    t = {
        "name": r["trial"],
        "data": r["data"],
        "model": r["model"],
        "params": p,
        "params_non_embedding": p_ne,
        "n_people": int(meta["n_people"]),
        "exposures": e,
        "bits": bits,
        "max_bits": mx,
        "ratio": bits / p,
        "ratio_max": mx / p,
        "ratio_non_embedding": bits / p_ne,
        "fraction_of_max": bits / mx,
        "p1": r["knowledge.p1"],
        "p2": r["knowledge.p2"],
        "p3": r["knowledge.p3"],
    }
    for q in QUANT:
        if r.get(f"knowledge.p1_{q}") is not None:
            qp = (r[f"knowledge.{k}_{q}"] for k in ("p1", "p2", "p3"))
            t[f"bits_{q}"] = float(knowledge_bits(meta, *qp))
            t[f"ratio_{q}"] = t[f"bits_{q}"] / p
            t[f"retained_{q}"] = capcheck.retention(t[f"bits_{q}"], bits)
    return t, guessed


def _fit(trials: list[dict], key: str, bound_frac: float, bound=None, params="params") -> dict:
    """fit_ratio on `trials` (bits under `key`); an `error` entry when it cannot be fitted."""
    try:
        f = fit_ratio(
            [t[params] for t in trials],
            [t[key] for t in trials],
            [t["max_bits"] for t in trials],
            bound_frac=bound_frac,
            bound=bound,
        )
    except ValueError as e:
        return {"estimate": None, "interval": None, "n_bound": 0, "error": str(e)}
    k = f.peak_index
    return {
        "estimate": f.ratio,
        "interval": list(f.ratio_interval),
        "n_bound": f.n_bound,
        "bound_trials": [t["name"] for t, b in zip(trials, f.bound, strict=True) if b],
        "bound": list(f.bound),
        "peak": f.peak_ratio,
        "peak_trial": trials[k]["name"],
    }


def _share(sel: list[dict], key: str, mask=None) -> float | None:
    """Σ bits under `key` / Σ fp32 bits over `sel` (the trials where `mask` is true); None when
    undefined or absurd (capcheck.retention)."""
    mask = [True] * len(sel) if mask is None else mask
    num = sum(t[key] for t, b in zip(sel, mask, strict=True) if b)
    return capcheck.retention(num, sum(t["bits"] for t, b in zip(sel, mask, strict=True) if b))


def _group(sel: list[dict], e: float, bound_frac: float) -> dict:
    """The fits of one exposure count: R, R per non-embedding parameter, int8 / int4. Trials
    with fp32 bits <= 0 (NEGATIVE_BITS) take no part."""
    sel = [t for t in sel if t["bits"] > 0]
    if not sel:
        return {"exposures": e, "estimate": None, "interval": None, "n_bound": 0, "quantized": {},
                "error": "no trial with positive bits", "fraction_of_max_unbound": []}  # fmt: skip
    g = {"exposures": e, **_fit(sel, "bits", bound_frac)}
    g["diagnostics"] = capcheck.group_diagnostics(g, sel)
    if g["estimate"] is not None:
        ne = _fit(sel, "bits", bound_frac, g["bound"], "params_non_embedding")
        g["non_embedding"] = {k: ne[k] for k in ("estimate", "interval")}
    mask = g.get("bound")
    big = [t for t, b in zip(sel, mask or [False] * len(sel), strict=True) if not b]
    g["fraction_of_max_unbound"] = [t["fraction_of_max"] for t in big]
    quant = {}
    for q in QUANT:
        if not all(f"bits_{q}" in t for t in sel):
            continue
        fq = _fit(sel, f"bits_{q}", bound_frac, mask) if mask else {}
        quant[q] = {
            "estimate": fq.get("estimate"),
            "interval": fq.get("interval"),
            "retained": _share(sel, f"bits_{q}"),  # Σ quantized bits / Σ fp32 bits, this group
            "retained_bound": _share(sel, f"bits_{q}", mask) if mask else None,
        }
    g["quantized"] = quant
    return g


def fit_study(trials: list[dict], bound_frac: float = 0.9) -> dict:
    """`ratio` (largest exposure count), `groups` (one fit per exposure count), `quantized`."""
    groups = [
        _group([t for t in trials if t["exposures"] == e], e, bound_frac)
        for e in sorted({t["exposures"] for t in trials}, reverse=True)
    ]
    main = groups[0]
    ratio = {k: v for k, v in main.items() if k not in ("quantized", "bound")}
    quantized = {"method": QUANT_METHOD, "exposures": main["exposures"], **main["quantized"]}
    diags = capcheck.trial_diagnostics(trials)
    for g in groups:
        g.pop("bound", None)
        diags += g.pop("diagnostics", ())
    ratio.pop("diagnostics", None)
    for q in QUANT:
        if q in quantized and quantized[q].get("retained") is None and main["estimate"]:
            diags += (
                Diagnostic(
                    "RETENTION_UNDEFINED",
                    "warning",
                    f"{q}: the share of bits kept over the {main['exposures']:g}-exposure group "
                    "is undefined or above 105%",
                    "read the bits per trial, not the share",
                    q,
                ),
            )
    return {"ratio": ratio, "groups": groups, "quantized": quantized, "diagnostics": diags}


def _summary(ratio: dict, groups, quantized: dict):
    """params / intervals / metrics of the CapacityResult convention (see its docstring)."""
    params, intervals = {}, {}

    def put(name, fit):
        if fit and fit.get("estimate") is not None:
            params[name] = fit["estimate"]
            intervals[name] = tuple(fit["interval"])

    put("R", ratio)
    put("R_non_embedding", ratio.get("non_embedding"))
    for q in QUANT:
        put(f"R_{q}", quantized.get(q))
    for g in groups:
        put(f"R[{g['exposures']:g}]", g)
    metrics = {"peak_R": ratio.get("peak"), "n_bound": ratio.get("n_bound", 0)}
    return params, intervals, {k: v for k, v in metrics.items() if v is not None}


def _group_diagnostics(groups) -> tuple[Diagnostic, ...]:
    return tuple(
        Diagnostic(
            "FIT_SKIPPED",
            "warning",
            g["error"],
            "train smaller models or more people",
            f"{g['exposures']:g} exposures",
        )
        for g in groups
        if g.get("error")
    )


def _warning_diagnostics(messages) -> tuple[Diagnostic, ...]:
    return tuple(Diagnostic("FIT_WARNING", "warning", m, "read the message") for m in messages)
