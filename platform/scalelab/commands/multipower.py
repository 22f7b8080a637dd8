"""`scalelab fit multipower` and `scalelab propose schedule` (multi-power law, Luo et al. 2025).

Parse → call scalelaws (fit_multipower / evaluate_multipower / propose_schedule) → print → plot.
Curves come from CSV/Parquet files with columns step, lr, loss (loss may be empty on rows that
only carry the LR) or from a study folder (runs.parquet + curves.parquet; exact LR from each
trial's spec). `--step-offset 1` reads files whose `step` is the 0-based index of the update
just made (the MPL reference CSVs). scalelaws is imported inside the commands, so
`scalelab --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app, propose_app
from scalelab.errors import UserError, check_writable

MIN_RESAMPLES = 20  # scalelaws.core.checks.MIN_RESAMPLES (imported late: keeps --help fast)
_METRICS = ("r2", "mae", "rmse", "pred_e", "worst_e")


def print_diagnostics(diags) -> None:
    """One line per diagnostic (warnings in yellow)."""
    from rich.console import Console

    con = Console()
    for d in diags:
        style = "yellow" if d.severity != "info" else "dim"
        con.print(d.line(), style=style, markup=False, highlight=False, soft_wrap=True)


def _study_selection(root: Path, where: str | None, test_where: str | None):
    """(study, fit trials, test trials): completed runs matching --where (all if none), minus
    the runs matching --test-where, which are the test curves."""
    import polars as pl

    from scalelaws import load_study

    try:
        study = load_study(root)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--runs") from None
    done = study.runs.filter(pl.col("status") == "completed")
    try:
        tested = done.filter(pl.sql_expr(test_where)) if test_where else done.clear()
        fitted = done.filter(pl.sql_expr(where)) if where else done
    except Exception as e:  # polars raises several error types for a bad expression
        raise typer.BadParameter(f"bad filter: {e}", param_hint="--where/--test-where") from None
    tests = tested["trial"].to_list()
    fits = [t for t in fitted["trial"].to_list() if t not in set(tests)]
    if not fits:
        raise typer.BadParameter(f"no completed trial with curves in {root} matches --where")
    return study, fits, tests


def _print_table(res) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{res.law}: per-curve metrics")
    for col in ("curve", "role", "R²", "MAE", "RMSE", "PredE", "WorstE"):
        t.add_column(col, justify="left" if col in ("curve", "role") else "right")
    for r in res.curves:
        t.add_row(r["name"], r["role"], *(f"{r[k]:.5f}" for k in _METRICS))
    for role, m in res.metrics.items():
        t.add_row(f"mean ({role})", role, *(f"{m[k]:.5f}" for k in _METRICS), style="bold")
    n_boot = int(res.info.get("n_boot", 0))
    p = Table(title=f"parameters (95% bootstrap interval over curves, {n_boot} resamples)")
    p.add_column("name")
    p.add_column("value", justify="right")
    p.add_column("interval", justify="right")
    flagged = {s for d in res.diagnostics if d.code == "PARAM_AT_BOUND" for s in [d.subject]}
    for k, v in res.params.items():
        iv = res.intervals.get(k)
        text = f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "-"
        if iv and n_boot < MIN_RESAMPLES:
            text = f"unavailable (< {MIN_RESAMPLES} resamples)"
        at = " (at bound)" if k in flagged or (k == "C" and "C_ref" in flagged) else ""
        p.add_row(k, f"{v:.6g}{at}", text)
    con = Console()
    con.print(t)
    con.print(p)
    print_diagnostics(res.diagnostics)


@fit_app.command("multipower")
def fit_multipower(
    fit: Annotated[list[Path], typer.Option("--fit", help="Curve file to fit (repeat).")] = [],  # noqa: B006
    test: Annotated[
        list[Path], typer.Option("--test", help="Curve file to predict (repeat).")
    ] = [],  # noqa: B006
    runs: Annotated[
        Path | None, typer.Option(help="Study folder with runs/curves.parquet.")
    ] = None,
    where: Annotated[str | None, typer.Option(help="Polars SQL filter on runs.parquet.")] = None,
    test_where: Annotated[
        str | None, typer.Option(help="Runs matching this filter are test curves.")
    ] = None,
    loss_column: Annotated[
        str, typer.Option(help="eval_loss or train_loss (--runs).")
    ] = "eval_loss",
    warmup_steps: Annotated[int, typer.Option(help="Warmup steps W (files: LR rebuild).")] = 0,
    step_offset: Annotated[
        int, typer.Option(help="Updates done = file step + OFFSET (1 for the MPL refdata CSVs).")
    ] = 0,
    law: Annotated[
        str | None, typer.Option(help="multipower (default), power or momentum.")
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="FIT.json: evaluate its parameters, no fitting.")
    ] = None,
    weighting: Annotated[str, typer.Option(help="curve (equal per curve) or point.")] = "curve",
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples over curves (0: none; >= 20 for 95%).")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write FitResult JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of measured vs predicted.")] = None,
):
    """Fit the multi-power law (or a baseline) to loss curves; print per-curve metrics.

    Curve files (CSV or Parquet), one curve per file, columns: step (optimizer updates done, an
    integer >= 1 after --step-offset, strictly increasing), lr (the LR of that step's update,
    finite, >= 0, not all 0), loss (finite, > 0; empty on rows that only carry the LR). The LR
    between rows is rebuilt piecewise-linearly (diagnostic LR_REBUILT)."""
    import scalelaws as sl
    from scalelaws.multipower.law import LAWS

    if law is not None and law not in LAWS:
        raise typer.BadParameter(f"unknown law {law!r}; use one of {', '.join(LAWS)}")
    if warmup_steps < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--warmup-steps")
    if bootstrap < 0:
        raise typer.BadParameter(
            f"{bootstrap}: must be >= 0 (0: no intervals; >= 20 for a 95% interval)",
            param_hint="--bootstrap",
        )
    if not (fit or test or runs):
        raise typer.BadParameter("give curves with --fit/--test files or --runs DIR")
    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            check_writable(path, option)
    curves = _file_curves(fit, "fit", warmup_steps, step_offset)
    curves += _file_curves(test, "test", warmup_steps, step_offset)
    if runs is not None:
        curves += _study_curves(runs, where, test_where, loss_column)
    try:
        if params is not None:
            given = sl.FitResult.load(params)
            if law is not None and law != given.law:
                raise UserError(f"--params: {params} holds a {given.law!r} fit, not --law {law}")
            res = sl.evaluate_multipower(given.params, curves, law=given.law)
        else:
            res = sl.fit_multipower(
                curves, law=law or "multipower", weighting=weighting, n_boot=bootstrap, seed=seed
            )
    except RuntimeError as e:  # no start converged: a property of these curves, said in one line
        raise UserError(str(e)) from None
    _print_table(res)
    if out is not None:
        res.save(out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from scalelaws.multipower.plots import plot_curves

        plot_curves(curves, res.params, plot, law=res.law, diagnostics=res.diagnostics, fit=res)
        typer.echo(f"wrote {plot}")


def _file_curves(paths, role: str, warmup_steps: int, step_offset: int) -> list:
    from scalelaws.multipower.curves import read_curve_file

    kw = dict(role=role, warmup_steps=warmup_steps, step_offset=step_offset)
    return [read_curve_file(p, **kw) for p in paths]


def _study_curves(root: Path, where: str | None, test_where: str | None, loss_column: str):
    """Curves of the selected trials, exact LR from each trial's spec."""
    import polars as pl

    from scalelaws.multipower.fit import collect_curves

    study, fits, tests = _study_selection(root, where, test_where)
    frame = study.curves
    test = frame.filter(pl.col("trial").is_in(tests)) if tests else None
    try:
        return collect_curves(
            frame.filter(pl.col("trial").is_in(fits)), test, study=study, loss=loss_column
        )
    except ValueError as e:
        raise typer.BadParameter(f"{e} (in {root}, --where)") from None


@propose_app.command("schedule")
def propose_schedule(
    fit: Annotated[Path, typer.Option(help="FIT.json of a multipower fit.")],
    total_steps: Annotated[int, typer.Option(help="Optimizer steps, warmup included.")],
    warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps (0 → peak).")],
    peak_lr: Annotated[float, typer.Option(help="Peak learning rate.")],
    out: Annotated[Path, typer.Option(help="Write SCHED.json here.")],
    floor: Annotated[
        float | None, typer.Option(help="Final LR of the cosine/WSD baselines (peak/10).")
    ] = None,
    knots: Annotated[int, typer.Option(help="Knots of the coarse stage.")] = 200,
    smooth: Annotated[
        bool,
        typer.Option(
            help="Stop at the knot stage: a smooth schedule (the per-step optimum "
            "of the MPL is a few-step staircase)."
        ),
    ] = False,
    plot: Annotated[Path | None, typer.Option(help="PNG: schedules and predicted losses.")] = None,
    lr_floor: Annotated[
        float | None,
        typer.Option(help="Lowest LR of the proposal (default: the fit's lowest post-warmup LR)."),
    ] = None,
    max_log_drop: Annotated[
        float | None,
        typer.Option(help="Largest one-step drop of log LR (default: the fit's steepest)."),
    ] = None,
    unconstrained: Annotated[
        bool, typer.Option(help="Search every monotone schedule, not only the fit's range.")
    ] = False,
):
    """Propose the LR schedule that minimises the fitted law's final loss among the schedules
    its fitting curves vouch for (an LR floor and a per-step drop bound from FIT.json); compare
    with cosine and the best WSD. Warns when the prediction is below L0 or the best run."""
    import scalelaws as sl

    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            check_writable(path, option)
    prop = sl.propose_schedule(
        fit,
        total_steps,
        peak_lr,
        warmup_steps=warmup_steps,
        floor=floor,
        knots=knots,
        smooth=smooth,
        lr_floor=lr_floor,
        max_log_drop=max_log_drop,
        constrained=not unconstrained,
    )
    prop.save(out)
    b = prop.baselines
    n = prop.info.get("n_bootstrap", 0)
    iv = f" [{prop.interval[0]:.5f}, {prop.interval[1]:.5f}]" if prop.interval else ""
    if prop.interval and n < MIN_RESAMPLES:
        iv = f" (95% interval unavailable: {n} resamples)"
    typer.echo(
        f"proposed: predicted final loss {prop.predicted_final_loss:.5f}{iv}; "
        f"cosine {b['cosine']['predicted_final_loss']:.5f}; best WSD "
        f"{b['wsd']['predicted_final_loss']:.5f} ({b['wsd']['shape']}, "
        f"decay_steps {b['wsd']['params']['decay_steps']}) -> {out}"
    )
    print_diagnostics(prop.diagnostics)
    if plot is not None:
        from scalelaws.multipower.plots import plot_proposal

        plot_proposal(prop, plot)
        typer.echo(f"wrote {plot}")
