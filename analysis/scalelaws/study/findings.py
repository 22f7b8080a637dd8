"""The results a study folder holds: every fit and proposal JSON its hooks and commands wrote.

    for f in find_results("results/quickstart"):
        f.title, f.kind, f.param_rows(), f.metrics(), f.diagnostics, f.figure

Known files come first, in this order (KNOWN); any other JSON in the folder that is a result
(it has `params` and `diagnostics`: scalelaws.core.result.Result.to_dict) follows, by name. A
result's figure is the PNG of the same stem the hook wrote beside it (case-insensitive).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KNOWN = {
    "mpl_fit.json": "Multi-power law fit",
    "proposed_schedule.json": "Proposed LR schedule",
    "CBS.json": "Critical batch size (EWA eval loss)",
    "CBS_raw.json": "Critical batch size (raw eval loss)",
    "capacity.json": "Knowledge capacity",
    "isoflop.json": "Chinchilla: isoFLOP profiles (approach 2) and loss surface (approach 3)",
    "chinchilla.json": "Loss surface L(N, D) (Chinchilla approach 3)",
    "closed_loop.json": "Closed loop: proposed minus baseline, paired by seed",
    "hparams.json": "Optimal peak LR and batch size per (N, D) cell and their laws",
    "study_points.json": "Proposed peak LR and batch size at a new (N, D), as study points",
}
NOT_RESULTS = {"study.json", "wandb_view.json", "backtest.json"}  # backtest: its own section


@dataclass(frozen=True)
class Finding:
    """One result file: `doc` is its JSON (Result.to_dict)."""

    path: Path
    title: str
    doc: dict[str, Any]
    figure: Path | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind") or self.doc.get("law") or "result")

    @property
    def is_proposal(self) -> bool:
        return self.kind == "ScheduleProposal"

    @property
    def diagnostics(self) -> list[dict]:
        return list(self.doc.get("diagnostics") or [])

    def param_rows(self) -> list[tuple[str, float | None, float | None, float | None]]:
        """(name, value, lo, hi) per parameter (lo/hi: its 95% interval, None without one).
        A proposal: one row per schedule, its predicted final loss and interval."""
        ivs = self.doc.get("intervals") or {}
        if self.is_proposal:
            vals = {"proposed": self.doc.get("predicted_final_loss")} | {
                k: b.get("predicted_final_loss") for k, b in self.doc.get("baselines", {}).items()
            }
        else:
            vals = self.doc.get("params") or {}
        rows = []
        for k, v in vals.items():
            lo, hi = (list(ivs.get(k) or []) + [None, None])[:2]
            rows.append((k, _num(v), _num(lo), _num(hi)))
        return rows

    def metrics(self) -> dict[str, float]:
        """The result's metrics flattened to {"fit.r2": ...} (numbers only)."""
        flat = _flat(self.doc.get("metrics") or {})
        return {k: _num(v) for k, v in flat.items() if _num(v) is not None}


def find_results(root: str | Path) -> list[Finding]:
    """Every result JSON in the folder `root` (not its subfolders)."""
    root = Path(root)
    paths = [root / n for n in KNOWN if (root / n).is_file()]
    others = sorted(p for p in root.glob("*.json") if p.name not in {*KNOWN, *NOT_RESULTS})
    return [f for p in paths + others if (f := load_result(p)) is not None]


def load_result(path: str | Path, figure: str | Path | None = None) -> Finding | None:
    """The result in the JSON file `path` (None when it is not one); figure: its PNG (default:
    the PNG of the same stem beside it)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(doc, dict) and "params" in doc and "diagnostics" in doc):
        return None
    fig = Path(figure) if figure is not None and Path(figure).is_file() else _figure(path)
    return Finding(path, KNOWN.get(path.name, path.stem), doc, fig)


def _figure(path: Path) -> Path | None:
    for p in path.parent.glob("*.png"):
        if p.stem.lower() == path.stem.lower():
            return p
    return None


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
