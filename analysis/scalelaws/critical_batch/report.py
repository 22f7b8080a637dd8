"""Markdown reports of fitted results (no fitting here)."""

from __future__ import annotations

import polars as pl

from scalelaws.critical_batch.fit import CBSResult


def _num(v, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _iv(v, ci, fmt: str = "{:.0f}") -> str:
    return f"{_num(v, fmt)} [{_num(ci[0], fmt)}, {_num(ci[1], fmt)}]"


def cbs_markdown(
    res: CBSResult, raw: CBSResult | None, per_b: pl.DataFrame, median: dict, b_min: int
) -> str:
    """CBS.md of the critical-batch study: per-group CBS table (with the raw-loss fit `raw`),
    T(B) table, B_simple per batch size (`per_b`, and its `median` over B >= b_min), and the
    scaling fits (Zhang et al. 2025; McCandlish et al. 2018; docs/laws.md §2)."""
    doc, steps = res.to_dict(), res.steps_frame()
    raw_cbs = {g["group"]: g for g in raw.to_dict()["groups"]} if raw is not None else {}
    lines = [
        f"B_ref = {doc['ref_batch']} sequences; loss = {doc['loss_col']}; B_simple read at "
        f"B = {doc['noise_batch']} and as the median over the runs at B >= {b_min}; "
        f"95% bootstrap intervals ({doc['n_boot']} resamples).",
        "",
        "| N (non-emb) | D (tokens) | target | CBS (20%) | B_crit = E/S | S_min (steps) | "
        f"E_min (seqs) | B_simple (B={doc['noise_batch']}) | B_simple (median) | "
        "CBS, raw-loss fit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in doc["groups"]:
        r = raw_cbs.get(g["group"])
        cells = [
            f"{g['params']:,}",
            f"{g['tokens']:,}",
            f"{g['target']:.4f}",
            _iv(g["cbs"], g["cbs_interval"], "{:.1f}"),
            _iv(g["b_crit"], g["b_crit_interval"]),
            _iv(g["s_min"], g["s_min_interval"]),
            _iv(g["e_min"], g["e_min_interval"]),
            _num(g["noise_scale"]),
            _num(median.get(g["group"])),
            "-" if r is None else _iv(r["cbs"], r["cbs_interval"], "{:.1f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    bsz = sorted(steps["batch_size"].unique().to_list())
    lines += ["", "Steps to target T(B) (best LR in parentheses; - = not reached):", ""]
    lines += _batch_table(steps, bsz, _steps_cell)
    lines += ["", "B_simple (sequences) at the target, read from each B's best run:", ""]
    lines += _batch_table(per_b, bsz, _noise_cell, sort=False)
    lines += ["", "Scaling fits (OLS on logs; N in millions, D in billions of tokens):", ""]
    lines += _scaling_lines(doc)
    lines += [f"- warning: {w}" for w in doc["warnings"]]
    return "\n".join(lines) + "\n"


def _steps_cell(r: dict) -> str:
    return "-" if not r["reached"] else f"{r['steps_to_target']:.0f} ({r['lr']:g})"


def _noise_cell(r: dict) -> str:
    return "-" if r["noise_scale"] is None else f"{r['noise_scale']:.0f}"


def _batch_table(frame: pl.DataFrame, bsz: list, cell, sort: bool = True) -> list[str]:
    """One row per group, one column per batch size."""
    lines = ["| group | " + " | ".join(f"B={b}" for b in bsz) + " |", "|---|" + "---|" * len(bsz)]
    frame = frame.sort("batch_size") if sort else frame
    for (group,), part in frame.group_by("group", maintain_order=True):
        cells = {r["batch_size"]: cell(r) for r in part.iter_rows(named=True)}
        lines.append(f"| {group} | " + " | ".join(cells.get(b, "") for b in bsz) + " |")
    return lines


def _scaling_lines(doc: dict) -> list[str]:
    lines = []
    for key, title in (("scaling", "CBS"), ("scaling_b_crit", "B_crit")):
        for name, law in sorted(doc[key].items()):  # the order of the sorted JSON
            if name == "joint":
                a, b = law["a_interval"], law["b_interval"]
                lines.append(
                    f"- {title} = {law['coef']:.4g}·N^a·D^b: a = {law['a']:.3f} "
                    f"[{a[0]:.3f}, {a[1]:.3f}], b = {law['b']:.3f} [{b[0]:.3f}, {b[1]:.3f}], "
                    f"R² = {law['r2']:.3f}, n = {law['n']}"
                )
            else:
                lo, hi = law["exponent_interval"]
                lines.append(
                    f"- {title} vs {name} (pooled): exponent {law['exponent']:.3f} "
                    f"[{lo:.3f}, {hi:.3f}], R² = {law['r2']:.3f}, n = {law['n']}"
                )
    return lines
