"""`scalelab fit capacity`: knowledge capacity (bits per parameter) of a bioS / bioD study.

    scalelab fit capacity --runs DIR --out CAP.json [--plot CAP.png] [--bound-frac 0.9]

DIR holds runs.parquet with the `knowledge.*` columns that trials with knowledge_eval=True
write (scalelab/knowledge.py). Parse → scalelaws.fit_capacity → print → plot; the per-trial bits,
R and the int8 / int4 fits are described in scalelaws/capacity/fit.py (Allen-Zhu & Li 2024,
arXiv 2404.05405; docs/laws.md §3).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app
from scalelab.errors import check_writable


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def _trials_table(res, title: str):
    """Rich table: one row per trial (P, bits, share of max, R, R_max, R int8 / int4)."""
    from rich.table import Table

    tab = Table(title=title)
    cols = ["data", "exp.", "model", "P", "bits", "max", "of max", "R", "R_max", "R int8", "R int4"]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("data", "model") else "right", no_wrap=True)
    order = sorted(
        res.trials, key=lambda t: (t["data"], t["n_people"], -t["exposures"], t["params"])
    )
    for t in order:
        tab.add_row(
            f"{t['data']} N={t['n_people']:,}",
            f"{t['exposures']:g}",
            t["model"],
            f"{t['params'] / 1e3:,.1f}K",
            f"{t['bits'] / 1e3:,.1f}K",
            f"{t['max_bits'] / 1e3:,.1f}K",
            f"{t['fraction_of_max']:.1%}" if t["bits"] > 0 else "n/a",
            _f(t["ratio"]),
            _f(t["ratio_max"]),
            _f(t.get("ratio_int8")),
            _f(t.get("ratio_int4")),
        )
    return tab


def _group_line(g: dict) -> str:
    """R of one exposure count with its interval, peak and the int8 / int4 fits."""
    lo, hi = g["interval"]
    line = (
        f"{g['exposures']:g} exposures: R = {g['estimate']:.3f} bits/param "
        f"(95% [{lo:.3f}, {hi:.3f}], {g['n_bound']} capacity-bound trials; "
        f"peak {g['peak']:.3f} {g['peak_trial']})"
    )
    for q, v in g["quantized"].items():
        kept = "n/a (RETENTION_UNDEFINED)" if v["retained"] is None else f"{v['retained']:.1%}"
        line += f"; {q} R = {_f(v['estimate'])}, keeps {kept} of the bits"
    return line


@fit_app.command("capacity")
def capacity(
    runs: Annotated[Path, typer.Option("--runs", help="Study folder with runs.parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write CAP.json.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG: bits vs P per N, and R vs R_max.")
    ] = None,
    bound_frac: Annotated[
        float, typer.Option("--bound-frac", help="Capacity-bound: bits < this × max bits.")
    ] = 0.9,
) -> None:
    """Bits stored per parameter (Allen-Zhu & Li): R with a 95% interval, per-trial R, int8/int4.

    Reads DIR/runs.parquet: trial, status, data (bios/biod), model, tokens, batch_size, seq_len
    and the knowledge.* columns of knowledge_eval=True trials (p1, p2, p3 in nats summed over a
    name/value, their _int8/_int4 copies, params_used, params_non_embedding, n_people and the
    data's metadata), plus grid.exposures when the study has it."""
    from rich.console import Console

    import scalelaws as sl
    from scalelab.commands.multipower import print_diagnostics

    check_writable(out, "--out")
    if plot is not None:
        check_writable(plot, "--plot")
    console = Console(width=max(110, Console().width))
    res = sl.fit_capacity(runs, bound_frac)
    res.save(out)
    console.print(
        _trials_table(res, f"Knowledge capacity ({runs.name}); full trial names in {out.name}")
    )
    for g in res.groups:
        if g["estimate"] is not None:
            console.print(_group_line(g))
    print_diagnostics(res.diagnostics)
    if plot is not None:
        from scalelaws.capacity.plots import plot_capacity_study

        plot_capacity_study(
            list(res.trials),
            res.ratio.get("estimate"),
            plot,
            diagnostics=res.diagnostics,
            result=res,
        )
        console.print(f"plot: {plot}")
    console.print(f"wrote {out}")
