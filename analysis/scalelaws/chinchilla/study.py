"""A Chinchilla study end to end: read the runs (a CSV or a study folder), fit approach 2 and/or
approach 3, compare them, propose sizes for a budget; one Result for all of it (docs/laws.md §4).

    inp = read_runs("runs.csv", compute="total")            # or read_runs(study="results/isoflop")
    res = fit_chinchilla(inp.frame, inp.columns, compute="total", info=inp.info)
    res.approach2, res.approach3, res.comparison             # IsoFLOPFit, ChinchillaFit, Comparison
    propose_sizes(res, 5.88e23).proposals["approach3"]       # SizeProposal
    res.to_json("FIT.json"); load_analysis("FIT.json")

Hoffmann et al. 2022 (arXiv 2203.15556) approaches 2 and 3, approach 3 as re-fitted by
Besiroglu et al. 2024 (arXiv 2404.10102); the FLOPs convention is an explicit choice (Porian
et al. 2024, arXiv 2406.19146). Bad input raises ValueError with one line naming the file,
row or column and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from scalelaws.chinchilla.fit import ChinchillaFit, fit_loss_surface
from scalelaws.chinchilla.isoflop import IsoFLOPFit, fit_isoflop
from scalelaws.chinchilla.law import COMPUTE
from scalelaws.chinchilla.propose import Comparison, SizeProposal, compare_approaches, propose_size
from scalelaws.chinchilla.runs import ChinchillaRuns, chinchilla_runs
from scalelaws.core.diagnostics import Diagnostic
from scalelaws.core.result import Result

APPROACHES = ("2", "3", "both")
PARTS = ("approach2", "approach3", "comparison")
LABELS = {"approach2": "approach 2", "approach3": "approach 3", "comparison": "comparison"}


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class RunsInput:
    """The runs to fit: `frame`, the `columns` keyword arguments naming N, D, loss and FLOPs in
    it, `budget_col` (the CSV's budget column when it has one), and `info` (source, its
    sha256, the columns)."""

    frame: pl.DataFrame
    columns: dict[str, str]
    budget_col: str | None
    info: dict[str, Any]

    def runs(self, compute: str) -> ChinchillaRuns:
        """The usable runs under `compute` (for the figure)."""
        return chinchilla_runs(self.frame, compute=compute, **self.columns)


def read_runs(
    table: str | Path | None = None,
    *,
    study: str | Path | None = None,
    compute: str = "6ND",
    params: str = "total",
    loss_col: str = "final_eval_loss",
) -> RunsInput:
    """A CSV `table`, one row per run (read_csv), or a `study` folder's runs.parquet: N =
    params_total (params with `params`="non_embedding"), D = tokens_seen, loss = `loss_col`,
    FLOPs per token = flops_per_token; the fits keep completed trials only."""
    if (table is None) == (study is None):
        raise ValueError("read_runs: give exactly one of table (a CSV) or study (a folder)")
    if compute not in COMPUTE:
        raise ValueError(f"compute={compute!r}: use one of {', '.join(COMPUTE)}")
    if table is not None:
        path = Path(table)
        frame = read_csv(path, compute)
        cols = {"params_col": "N", "tokens_col": "D", "loss_col": "loss"}
        cols["flops_col"] = "flops" if compute == "total" else "flops_per_token"
        budget = "budget" if "budget" in frame.columns else None
    else:
        if params not in ("total", "non_embedding"):
            raise ValueError(f"params={params!r}: use 'total' or 'non_embedding'")
        path = Path(study) / "runs.parquet"
        if not path.is_file():
            raise ValueError(f"{study}: no runs.parquet (run `scalelab collect {study}`)")
        frame = pl.read_parquet(path)
        cols = {
            "params_col": "params_total" if params == "total" else "params",
            "tokens_col": "tokens_seen",
            "loss_col": loss_col or "final_eval_loss",
            "flops_col": "flops_per_token",
        }
        budget = None
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"source": str(path), "input_sha256": sha, "columns": cols}
    return RunsInput(frame, cols, budget, info)


def read_csv(path: Path, compute: str) -> pl.DataFrame:
    """The CSV as a frame with columns N (parameters), D (tokens), loss (final, nats/token),
    optional flops (total training FLOPs; needed by compute "total", and by "flops_per_token"
    as flops/D when there is no flops_per_token column), flops_per_token and budget (the
    isoFLOP slices); every number checked (finite, > 0), the first bad cell is a ValueError
    naming its row."""
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    try:
        df = pl.read_csv(path)
    except Exception as e:  # polars raises several types for unreadable CSV
        raise ValueError(f"{path}: not a readable CSV ({type(e).__name__})") from None
    need = ["N", "D", "loss"]
    if compute == "total":
        need.append("flops")
    elif compute == "flops_per_token" and "flops_per_token" not in df.columns:
        need.append("flops")  # per token = flops / D
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)}); "
            f"--compute {compute} needs {', '.join(need)}"
        )
    check = need + [c for c in ("flops", "flops_per_token") if c in df.columns and c not in need]
    for col in check:
        try:
            v = df[col].cast(pl.Float64).to_numpy()
        except Exception:
            raise ValueError(f"{path}: column {col} is not numeric") from None
        bad = ~(v > 0) | ~(abs(v) < math.inf)
        if bad.any():
            i = int(bad.argmax())
            raise ValueError(
                f"{path}: row {i + 1} has {col} = {df[col][i]}; every {col} must be finite and > 0"
            )
    if compute == "flops_per_token" and "flops_per_token" not in df.columns:
        df = df.with_columns(flops_per_token=pl.col("flops") / pl.col("D"))
    return df


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class ChinchillaAnalysis(Result):
    """Approach 2, approach 3 (either may be None), their comparison (None unless both) and
    proposals ({"approach3": SizeProposal, "approach2": ...}, empty unless proposed). params,
    intervals: every part's, keyed "approach3.alpha", "approach2.n_exponent",
    "comparison.geomean_ratio", "approach3.proposal.n"; metrics: {part: its metrics};
    diagnostics: every part's, the message led by the part ("approach 2: ..."); info: the
    FLOPs convention, the approaches, and the caller's (source, columns, ...)."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    metrics: dict[str, Any]
    diagnostics: tuple[Diagnostic, ...]
    info: dict[str, Any]
    approach2: IsoFLOPFit | None = None
    approach3: ChinchillaFit | None = None
    comparison: Comparison | None = None
    proposals: dict[str, SizeProposal] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        approach2: IsoFLOPFit | None = None,
        approach3: ChinchillaFit | None = None,
        comparison: Comparison | None = None,
        proposals: dict[str, SizeProposal] | None = None,
        info: dict[str, Any] | None = None,
    ) -> ChinchillaAnalysis:
        """The analysis of these parts, with the summary fields computed from them."""
        order = {"approach3": 0, "approach2": 1}  # as `fits`; JSON files sort their keys
        proposals = dict(sorted((proposals or {}).items(), key=lambda kv: order.get(kv[0], 2)))
        parts = {"approach2": approach2, "approach3": approach3, "comparison": comparison}
        named = [(k, LABELS[k], r) for k, r in parts.items() if r is not None]
        named += [
            (f"{k}.proposal", f"proposal from {LABELS.get(k, k)}", p) for k, p in proposals.items()
        ]  # a caller's own proposals (e.g. from a second approach-3 fit) keep their key
        params, intervals, metrics, diags = {}, {}, {}, []
        for key, label, res in named:
            params |= {f"{key}.{k}": v for k, v in res.params.items()}
            intervals |= {f"{key}.{k}": tuple(v) for k, v in res.intervals.items()}
            if res.metrics:
                metrics[key] = dict(res.metrics)
            diags += [
                dataclasses.replace(d, message=f"{label}: {d.message}") for d in res.diagnostics
            ]
        fits = [r for r in (approach2, approach3) if r is not None]
        computes = sorted(
            {r.info["compute"] for r in fits} | {p.info["compute"] for p in proposals.values()}
        )
        summary = {
            "approaches": [k for k in PARTS[:2] if parts[k] is not None],
            "compute": computes[0] if len(computes) == 1 else computes,
        }
        return cls(
            params=params,
            intervals=intervals,
            metrics=metrics,
            diagnostics=tuple(diags),
            info=summary | dict(info or {}),
            approach2=approach2,
            approach3=approach3,
            comparison=comparison,
            proposals=proposals,
        )

    def replace(self, **changes) -> ChinchillaAnalysis:
        """This analysis with some parts (approach2, approach3, comparison, proposals) or info
        replaced; the summary fields follow."""
        keep = {k: getattr(self, k) for k in (*PARTS, "proposals", "info")}
        return type(self).of(**(keep | changes))

    @property
    def fits(self) -> dict[str, IsoFLOPFit | ChinchillaFit]:
        """The fits present: {"approach3": ..., "approach2": ...}."""
        out = {"approach3": self.approach3, "approach2": self.approach2}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChinchillaAnalysis:
        types = {"approach2": IsoFLOPFit, "approach3": ChinchillaFit, "comparison": Comparison}
        parts = {k: t.from_dict(d[k]) for k, t in types.items() if isinstance(d.get(k), dict)}
        props = {k: SizeProposal.from_dict(p) for k, p in (d.get("proposals") or {}).items()}
        return cls.of(**parts, proposals=props, info=d.get("info") or {})


# --------------------------------------------------------------------------- fit, propose


def fit_chinchilla(
    frame: pl.DataFrame,
    columns: dict[str, str],
    *,
    approach: str = "both",
    compute: str = "6ND",
    budget_col: str | None = None,
    gap_dex: float = 0.1,
    n_boot: int = 1000,
    seed: int = 0,
    skip_bad_slices: bool = False,
    info: dict[str, Any] | None = None,
    window_dex: float | None = 0.6,
    keep_unbracketed: bool = False,
    fix_e: float | None = None,
    e_floor: float | None = None,
) -> ChinchillaAnalysis:
    """Approach 2 (fit_isoflop) and/or approach 3 (fit_loss_surface) on `frame`, `columns`
    naming N, D, loss and FLOPs (params_col, tokens_col, loss_col, flops_col), and their
    comparison when both ran. ValueError from the fits (too few runs or slices, ...)
    propagates; `skip_bad_slices` drops an unusable isoFLOP slice with a SLICE_SKIPPED warning
    instead; `window_dex`, `keep_unbracketed` and `n_boot`/`seed` go to fit_isoflop, `fix_e`
    and `e_floor` to fit_loss_surface. `info` (source, ...) is kept in the result's info."""
    if approach not in APPROACHES:
        raise ValueError(f"approach={approach!r}: use '2', '3' or 'both'")
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot}: must be >= 0 (0 = no intervals)")
    if budget_col is not None and budget_col not in frame.columns:
        raise ValueError(
            f"budget column {budget_col!r}: no such column (has {', '.join(frame.columns)})"
        )
    iso = surf = cmp = None
    if approach in ("2", "both"):
        bad = "skip" if skip_bad_slices else "raise"
        iso = fit_isoflop(frame, budget_col=budget_col, gap_dex=gap_dex, compute=compute,
                          on_bad_slice=bad, window_dex=window_dex,
                          keep_unbracketed=keep_unbracketed, n_boot=n_boot, seed=seed,
                          **columns)  # fmt: skip
    if approach in ("3", "both"):
        surf = fit_loss_surface(frame, compute=compute, n_boot=n_boot, seed=seed, fix_e=fix_e,
                                e_floor=e_floor, **columns)  # fmt: skip
    if iso is not None and surf is not None:
        cmp = compare_approaches(iso, surf)
    return ChinchillaAnalysis.of(iso, surf, cmp, info=(info or {}) | {"compute": compute})


def propose_sizes(
    analysis: ChinchillaAnalysis, flops: float, info: dict[str, Any] | None = None
) -> ChinchillaAnalysis:
    """propose_size at `flops` from every fit in `analysis`: an analysis holding only the
    proposals (info: flops and `info`)."""
    if not (math.isfinite(flops) and flops > 0):
        raise ValueError(f"flops = {flops}: a budget must be finite and > 0")
    props = {k: propose_size(f, flops) for k, f in analysis.fits.items()}
    return ChinchillaAnalysis.of(proposals=props, info={"flops": flops} | dict(info or {}))


def load_analysis(path: str | Path) -> ChinchillaAnalysis:
    """A ChinchillaAnalysis from its JSON (FIT.json), or from one fit's own JSON (kind
    IsoFLOPFit or ChinchillaFit); ValueError when the file holds no approach-2 or -3 fit."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no fit file at {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    single = {"IsoFLOPFit": "approach2", "ChinchillaFit": "approach3"}
    if isinstance(doc, dict) and doc.get("kind") in single:
        doc = {single[doc["kind"]]: doc}
    res = ChinchillaAnalysis.from_dict(doc) if isinstance(doc, dict) else None
    if res is None or not res.fits:
        raise ValueError(f"{path}: holds no approach-2 or approach-3 fit")
    return res
