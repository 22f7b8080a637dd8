"""`scalelab fit cbs`: critical batch size from a steps-to-target table or a study folder.

    scalelab fit cbs TABLE.csv --ref-batch 256 --out CBS.json [--plot CBS.png]
    scalelab fit cbs --runs DIR [--target LOSS] [--ref-batch B] [--noise-batch B] --out CBS.json

TABLE columns (one row per group and batch size; `scalelab fit cbs --help`):
    group            label of one (model size N, data size D) pair; one T(B) fit per group
    params           N, the group's model size (non-embedding parameters), > 0
    batch_size       B in sequences per optimizer step, > 0
    steps_to_target  optimizer steps to first reach the group's target loss, minimised over
                     the LR sweep (empty / NaN / inf: not reached, left out with a warning)
    tokens           optional: D, the group's data size in tokens (the budget that set the
                     target), used only for the CBS ∝ D scaling; not the tokens a run consumed
    reached          optional: false marks a row whose target was not reached
DIR holds runs.parquet and curves.parquet (the study tables contract).
Parse → scalelaws.fit_cbs → print → plot. Laws: McCandlish et al. 2018 (B_crit = E_min/S_min);
Zhang et al. 2025 (CBS at 20% overhead); docs/laws.md §2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app
from scalelab.errors import check_writable


def _fmt(v: float | None, interval=None) -> str:
    if v is None or not math.isfinite(v):
        return "inf"
    s = f"{v:,.1f}"
    if interval is not None:
        lo, hi = (f"{x:,.0f}" if math.isfinite(x) else "inf" for x in interval)
        s += f" [{lo}, {hi}]"
    return s


def _check_args(table: Path | None, runs: Path | None, target: float | None) -> None:
    if (table is None) == (runs is None):
        raise typer.BadParameter("give exactly one of TABLE.csv or --runs DIR")
    if table is not None and target is not None:
        raise typer.BadParameter("--target applies to --runs only; TABLE already has steps")


def _groups_table(res, study: bool):
    """Rich table: one row per group (S_min, E_min, B_crit, CBS; B_simple for a study)."""
    from rich.table import Table

    from scalelaws.critical_batch.fit import PARAMS_UNIT, TOKENS_UNIT

    tab = Table(title=f"Critical batch size (B_ref = {res.ref_batch} sequences, 95% bootstrap)")
    for col in ("group", "N (M)", "D (B tok)", "S_min", "E_min", "B_crit = E/S", "CBS (20%)"):
        tab.add_column(col, justify="left" if col == "group" else "right")
    if study:
        tab.add_column(f"B_simple at target (B={res.info['noise_batch']})", justify="right")
    for f in res.groups:
        row = [
            f.group,
            f"{f.params / PARAMS_UNIT:,.1f}" if f.params else "-",
            f"{f.tokens / TOKENS_UNIT:,.3g}" if f.tokens else "-",
            _fmt(f.s_min),
            f"{f.e_min:,.3g}",
            _fmt(f.b_crit, f.b_crit_interval),
            _fmt(f.cbs, f.cbs_interval),
        ]
        if study:
            row.append(_fmt(f.noise_scale) if f.noise_scale is not None else "-")
        tab.add_row(*row)
    return tab


def _scaling_lines(scaling: dict) -> list[str]:
    """One line per CBS power law: pooled in N or D, or the joint c·N^a·D^b."""
    lines = []
    for key, law in scaling.items():
        if key == "joint":
            lines.append(
                f"CBS ≈ {law.coef:.4g}·N^{law.a:.3f}·D^{law.b:.3f} "
                f"(a ∈ [{law.a_interval[0]:.3f}, {law.a_interval[1]:.3f}], "
                f"b ∈ [{law.b_interval[0]:.3f}, {law.b_interval[1]:.3f}])"
            )
        else:
            lo, hi = law.exponent_interval
            lines.append(
                f"CBS ≈ {law.coef:.4g}·({key}/{law.x_unit:.0e})^{law.exponent:.3f} "
                f"(95% [{lo:.3f}, {hi:.3f}], n={law.n})"
            )
    return lines


def _print(res, study: bool) -> None:
    from rich.console import Console

    from scalelab.commands.multipower import print_diagnostics

    console = Console()
    console.print(_groups_table(res, study))
    for line in _scaling_lines(res.scaling):
        console.print(line)
    print_diagnostics(res.diagnostics)


@fit_app.command("cbs")
def cbs(
    out: Annotated[Path, typer.Option("--out", help="Where to write CBS.json.")],
    table: Annotated[
        Path | None,
        typer.Argument(
            help="CSV: group, params (N), batch_size (sequences), steps_to_target (optimizer "
            "steps; empty = not reached)[, tokens (the group's data size D), reached]."
        ),
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
    force: Annotated[
        bool, typer.Option("--force", help="Fit CBS/B_crit scaling laws on < 4 groups anyway.")
    ] = False,
) -> None:
    """Critical batch size per group (T(B) = S_min + E_min/B) and its scaling with N and D.

    TABLE columns: group, params (N), batch_size (sequences), steps_to_target (optimizer steps;
    empty/NaN/inf = not reached), optional tokens (D: the group's data size that set the target,
    used only for CBS vs D) and reached. Scaling fits on fewer than 4 groups need --force."""
    from rich.console import Console

    import scalelaws as sl

    _check_args(table, runs, target)
    check_writable(out, "--out")
    if plot is not None:
        check_writable(plot, "--plot")
    res = sl.fit_cbs(
        table,
        study=runs,
        target=target,
        ref_batch=ref_batch,
        loss=loss_col,
        noise_batch=noise_batch,
        n_boot=n_boot,
        seed=seed,
        force=force,
    )
    res.save(out)
    _print(res, runs is not None)
    if plot is not None:
        from scalelaws.critical_batch.plots import plot_cbs

        plot_cbs(list(res.groups), res.scaling, plot, diagnostics=res.diagnostics)
        Console().print(f"plot: {plot}")
    Console().print(f"wrote {out}")
