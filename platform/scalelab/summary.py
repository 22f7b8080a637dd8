"""The end of a run, compactly: counts by status, the failures, the best trial per grid value.

Trial names are shortened to the parts that differ between the study's trials (plus the hash),
so they fit an 80-column terminal: `N150K-B16-lr3e-3-cosine-s0-1a2b3c` in a study that varies
only the schedule shows as `cosine-1a2b3c`.
"""

from __future__ import annotations

import math

import polars as pl

from scalelab.status import STATES
from scalelaws.study.summary import shared_prefixes, top_grid_columns

MAX_VALUES = 12  # grid keys with more values (seeds, fine LR ladders) are not listed


def short_names(names: list[str]) -> dict[str, str]:
    """name -> the dash-separated parts not shared by every name (the hash always kept)."""
    parts = [n.split("-") for n in names]
    if len(names) < 2 or len({len(p) for p in parts}) != 1:
        return {n: n for n in names}
    keep = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    keep = sorted(set(keep) | {len(parts[0]) - 1})
    return {n: "-".join(p[i] for i in keep) for n, p in zip(names, parts, strict=True)}


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def lines(runs: pl.DataFrame, width: int = 80) -> list[str]:
    """The summary as plain lines of at most `width` characters (wrapped by the caller)."""
    if runs.height == 0:
        return ["no trials collected"]
    short = short_names(runs["trial"].to_list())
    counts = runs.group_by("status").len()
    by = dict(zip(counts["status"], counts["len"], strict=True))
    out = [
        f"{runs.height} trials: "
        + ", ".join(f"{s} {by[s]}" for s in STATES if by.get(s))
        + "".join(f", {s} {n}" for s, n in by.items() if s not in STATES)
    ]
    if shared := shared_prefixes(runs):
        out.append(shared[0][:width])
    failed = runs.filter(pl.col("status") == "failed")
    for r in failed.head(5).iter_rows(named=True):
        err = (r.get("error") or "").splitlines()[0] if r.get("error") else ""
        out.append(f"  failed {short[r['trial']]}: {err}"[:width])
    if failed.height > 5:
        out.append(f"  ... and {failed.height - 5} more failed (scalelab status --all)")
    loss = "final_eval_loss"
    done = runs.filter(pl.col(loss).is_not_null() & (pl.col("status") == "completed"))
    grid = top_grid_columns(runs.columns)
    if done.height and grid:
        out.append(f"best {loss} per grid value:")
        for col in grid:
            values = done[col].unique().to_list()
            if not 2 <= len(values) <= MAX_VALUES:  # one value, or a seed-like axis
                continue
            best = done.sort(loss).group_by(col, maintain_order=True).first().sort(col)
            out.append(f"  {col[5:]}:")
            out += [
                f"    {_fmt(r[col])}: {_fmt(r[loss])} ({short[r['trial']]})"[:width]
                for r in best.iter_rows(named=True)
            ]
    if done.height:
        b = done.sort(loss).row(0, named=True)
        out.append(f"best trial: {b['trial']} ({loss} {_fmt(b[loss])})")
    return out
