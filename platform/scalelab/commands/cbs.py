"""`scalelab fit cbs`: critical batch size from a steps-to-target table or a study folder.

    scalelab fit cbs TABLE.csv --ref-batch 256 --out CBS.json [--plot CBS.png]
    scalelab fit cbs --runs DIR [--target LOSS] [--ref-batch B] [--noise-batch B] --out CBS.json

TABLE columns: group, params, batch_size, steps_to_target, optional tokens (data size D).
DIR holds runs.parquet and curves.parquet (the study tables contract).
Laws: McCandlish et al. 2018 (B_crit = E_min/S_min); Zhang et al. 2025 (CBS at 20% overhead).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app
from scalelaws.io import write_json

PARAMS_UNIT = 1e6  # N in millions of parameters (Zhang et al.: CBS ≈ 93.2·N^0.468)
TOKENS_UNIT = 1e9  # D in billions of tokens


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _fmt(v: float | None, interval=None) -> str:
    if v is None or not math.isfinite(v):
        return "inf"
    s = f"{v:,.1f}"
    if interval is not None:
        lo, hi = (f"{x:,.0f}" if math.isfinite(x) else "inf" for x in interval)
        s += f" [{lo}, {hi}]"
    return s


@fit_app.command("cbs")
def cbs(
    out: Annotated[Path, typer.Option("--out", help="Where to write CBS.json.")],
    table: Annotated[
        Path | None,
        typer.Argument(help="CSV with group, params, batch_size, steps_to_target[, tokens]."),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option("--runs", help="Study folder with runs.parquet and curves.parquet."),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option("--target", help="Target eval loss for every group (--runs only)."),
    ] = None,
    ref_batch: Annotated[
        int | None,
        typer.Option("--ref-batch", help="Reference batch (sequences); default: the smallest."),
    ] = None,
    loss_col: Annotated[
        str, typer.Option("--loss-col", help="Loss column, e.g. ewa_eval_loss (--runs only).")
    ] = "eval_loss",
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap resamples per group (>= 200).")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    noise_batch: Annotated[
        int | None,
        typer.Option(
            "--noise-batch", help="Read B_simple from the run at this batch (default: ref batch)."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG: steps vs B, CBS vs N and D.")
    ] = None,
) -> None:
    """Critical batch size per group (T(B) = S_min + E_min/B) and its scaling with N and D."""
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from scalelaws import batchsize as bs

    console = Console()
    if (table is None) == (runs is None):
        raise typer.BadParameter("give exactly one of TABLE.csv or --runs DIR")
    if table is not None and target is not None:
        raise typer.BadParameter("--target applies to --runs only; TABLE already has steps")

    doc: dict = {"kind": "cbs", "n_boot": n_boot, "seed": seed}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if table is not None:
                steps = pl.read_csv(table)
                doc |= {"source": str(table), "input_sha256": _sha256(table)}
            else:
                rp, cp = runs / "runs.parquet", runs / "curves.parquet"
                for p in (rp, cp):
                    if not p.exists():
                        raise ValueError(f"--runs {runs}: {p.name} not found")
                run_df, curves = pl.read_parquet(rp), pl.read_parquet(cp)
                if ref_batch is None:
                    ref_batch = int(run_df["batch_size"].min())
                steps = bs.steps_to_target(curves, run_df, target, ref_batch, loss_col)
                noise = bs.noise_scale_at_target(curves, steps, noise_batch or ref_batch)
                doc |= {
                    "source": str(runs),
                    "input_sha256": _sha256(rp, cp),
                    "loss_col": loss_col,
                    "noise_batch": noise_batch or ref_batch,
                    "steps": steps.to_dicts(),
                }
            if ref_batch is None:
                ref_batch = int(steps["batch_size"].min())
            fits = bs.fit_cbs_table(steps, ref_batch, n_boot=n_boot, seed=seed)
            scaling = bs.fit_cbs_scaling(fits, "cbs", PARAMS_UNIT, TOKENS_UNIT)
            scaling_bc = bs.fit_cbs_scaling(fits, "b_crit", PARAMS_UNIT, TOKENS_UNIT)
        except ValueError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(1) from e

    groups = []
    for f in fits:
        g = f.to_dict()
        if runs is not None:
            rows = steps.filter(pl.col("group") == f.group)
            g["target"] = rows["target"][0]
            nz = noise.filter(pl.col("group") == f.group)
            g["noise_scale"] = nz["noise_scale"][0] if nz.height else None
            g["noise_scale_step"] = nz["step"][0] if nz.height else None
        groups.append(g)
    doc |= {
        "ref_batch": ref_batch,
        "units": {
            "batch_size": "sequences per optimizer step",
            "steps": "optimizer steps",
            "params_unit": PARAMS_UNIT,
            "tokens_unit": TOKENS_UNIT,
        },
        "groups": groups,
        "scaling": {k: v.to_dict() for k, v in scaling.items()},
        "scaling_b_crit": {k: v.to_dict() for k, v in scaling_bc.items()},
        "warnings": [str(w.message) for w in caught],
    }
    write_json(out, doc)

    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}")
    tab = Table(title=f"Critical batch size (B_ref = {ref_batch} sequences, 95% bootstrap)")
    for col in ("group", "N (M)", "D (B tok)", "S_min", "E_min", "B_crit = E/S", "CBS (20%)"):
        tab.add_column(col, justify="left" if col == "group" else "right")
    if runs is not None:
        tab.add_column(f"B_simple at target (B={noise_batch or ref_batch})", justify="right")
    for f, g in zip(fits, groups, strict=True):
        row = [
            f.group,
            f"{f.params / PARAMS_UNIT:,.1f}" if f.params else "-",
            f"{f.tokens / TOKENS_UNIT:,.3g}" if f.tokens else "-",
            _fmt(f.s_min),
            f"{f.e_min:,.3g}",
            _fmt(f.b_crit, f.b_crit_interval),
            _fmt(f.cbs, f.cbs_interval),
        ]
        if runs is not None:
            row.append(_fmt(g["noise_scale"]) if g["noise_scale"] is not None else "-")
        tab.add_row(*row)
    console.print(tab)
    for key, law in scaling.items():
        if key == "joint":
            console.print(
                f"CBS ≈ {law.coef:.4g}·N^{law.a:.3f}·D^{law.b:.3f} "
                f"(a ∈ [{law.a_interval[0]:.3f}, {law.a_interval[1]:.3f}], "
                f"b ∈ [{law.b_interval[0]:.3f}, {law.b_interval[1]:.3f}])"
            )
        else:
            lo, hi = law.exponent_interval
            console.print(
                f"CBS ≈ {law.coef:.4g}·({key}/{law.x_unit:.0e})^{law.exponent:.3f} "
                f"(95% [{lo:.3f}, {hi:.3f}], n={law.n})"
            )
    if plot is not None:
        from scalelaws.plots_cbs import plot_cbs

        plot_cbs(fits, scaling, plot)
        console.print(f"plot: {plot}")
    console.print(f"wrote {out}")
