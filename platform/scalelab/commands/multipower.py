"""`scalelab fit multipower` and `scalelab propose schedule` (multi-power law, Luo et al. 2025).

Curves come from CSV/Parquet files with columns step, lr, loss (loss may be empty on rows that
only carry the LR) or from a study folder (runs.parquet + curves.parquet). Step convention: the
loss at step s is measured after s updates, which used lr[0:s], and a row's `lr` is the LR of
the last of those updates (scalelab curves). `--step-offset 1` reads files whose `step` is the
0-based index of the update just made (the MPL reference CSVs: row step s, LR lr[s]).
numpy/scipy/polars are imported inside the commands, so `scalelab --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app, propose_app

_METRICS = ("r2", "mae", "rmse", "pred_e", "worst_e")


def _read_table(path: Path):
    import polars as pl

    if not path.is_file():
        raise typer.BadParameter(f"no file at {path}", param_hint="--fit/--test")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".csv":
        return pl.read_csv(path)
    raise typer.BadParameter(f"{path.name}: use a .csv or .parquet file", param_hint="--fit/--test")


def _make_curve(name, role, steps, lrs, losses, warmup_steps, step_offset, lr=None):
    """A Curve from logged rows. A row's `lr` is the LR of the last update before its loss, i.e.
    lr[step + offset − 1]; the per-step LR is rebuilt from those (build_lr) unless `lr` is given
    and agrees with them. Loss rows inside the warmup are dropped (the law describes the
    post-warmup curve)."""
    import numpy as np

    from scalelaws.multipower import Curve, build_lr

    done = np.asarray(steps, dtype=np.int64) + step_offset  # updates done at each row
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    ok = np.isfinite(losses) & (done >= max(1, warmup_steps))
    if not ok.any():
        raise typer.BadParameter(f"{name}: no loss rows after warmup ({warmup_steps} steps)")
    last = int(done[ok].max())
    has = (done >= 1) & np.isfinite(lrs)
    if lr is not None:
        lr = np.asarray(lr, float)
        idx = done[has] - 1
        if len(lr) < last or (
            idx.size and not np.allclose(lr[np.minimum(idx, len(lr) - 1)], lrs[has], rtol=1e-6)
        ):
            typer.echo(f"warning: {name}: spec LR disagrees with the logged lr; rebuilt", err=True)
            lr = None
    if lr is None:
        lr = build_lr(done[has] - 1, lrs[has], warmup_steps, total=last)
    return Curve(name, lr, done[ok], losses[ok], role=role)


def _file_curves(paths, role, warmup_steps, step_offset):
    out = []
    for p in paths:
        df = _read_table(p)
        missing = {"step", "lr", "loss"} - set(df.columns)
        if missing:
            raise typer.BadParameter(f"{p}: missing columns {sorted(missing)} (need step,lr,loss)")
        df = df.sort("step")
        out.append(
            _make_curve(
                p.stem,
                role,
                df["step"].to_numpy(),
                df["lr"].cast(float).to_numpy(),
                df["loss"].cast(float).to_numpy(),
                warmup_steps,
                step_offset,
            )
        )
    return out


def _spec_lr(spec_json: str):
    """(exact per-step LR, warmup steps) of a study trial, from its spec."""
    from scalelab.config import TrialSpec

    spec = TrialSpec.from_json(spec_json)
    return spec.lr_array(), spec.schedule.warmup_steps


def _study_curves(root: Path, where: str | None, test_where: str | None, loss_column: str):
    import polars as pl

    runs_p, curves_p = root / "runs.parquet", root / "curves.parquet"
    for p in (runs_p, curves_p):
        if not p.is_file():
            raise typer.BadParameter(f"no {p.name} in {root} (run `scalelab collect` first?)")
    done = pl.read_parquet(runs_p).filter(pl.col("status") == "completed")
    try:  # fit: runs matching --where (all if none); test: runs matching --test-where
        tested = done.filter(pl.sql_expr(test_where)) if test_where else done.clear()
        fitted = done.filter(pl.sql_expr(where)) if where else done
    except Exception as e:  # polars raises several error types for a bad expression
        raise typer.BadParameter(f"bad filter: {e}", param_hint="--where/--test-where") from None
    tests = set(tested["trial"])
    runs = pl.concat([fitted.filter(~pl.col("trial").is_in(tests)), tested])
    table = pl.read_parquet(curves_p)
    if loss_column not in table.columns:
        raise typer.BadParameter(f"curves.parquet has no column {loss_column!r}")
    out = []
    for row in runs.iter_rows(named=True):
        lr, warm = _spec_lr(row["spec"])
        # the law is fitted after warmup, as Luo et al. do (the refdata rows start there too)
        c = table.filter((pl.col("trial") == row["trial"]) & (pl.col("step") > warm)).sort("step")
        if c.height == 0:
            continue
        out.append(
            _make_curve(
                row["trial"],
                "test" if row["trial"] in tests else "fit",
                c["step"].to_numpy(),
                c["lr"].cast(float).to_numpy(),
                c[loss_column].cast(float).to_numpy(),
                warm,
                0,
                lr=lr,
            )
        )
    if not out:
        raise typer.BadParameter(f"no completed trial with curves in {root} matches --where")
    return out


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
    p = Table(title="parameters (95% bootstrap interval)")
    p.add_column("name")
    p.add_column("value", justify="right")
    p.add_column("interval", justify="right")
    for k, v in res.params.items():
        iv = res.intervals.get(k)
        p.add_row(k, f"{v:.6g}", f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "-")
    con = Console()
    con.print(t)
    con.print(p)


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
    law: Annotated[str, typer.Option(help="multipower, power or momentum.")] = "multipower",
    params: Annotated[
        Path | None, typer.Option(help="FIT.json: evaluate its parameters, no fitting.")
    ] = None,
    weighting: Annotated[str, typer.Option(help="curve (equal per curve) or point.")] = "curve",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples over curves.")] = 30,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write FitResult JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of measured vs predicted.")] = None,
):
    """Fit the multi-power law (or a baseline) to loss curves; print per-curve metrics."""
    from scalelaws.fitting import FitResult
    from scalelaws.multipower import LAWS, evaluation_result, fit_curves

    if law not in LAWS:
        raise typer.BadParameter(f"unknown law {law!r}; use one of {', '.join(LAWS)}")
    if warmup_steps < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--warmup-steps")
    curves = _file_curves(fit, "fit", warmup_steps, step_offset)
    curves += _file_curves(test, "test", warmup_steps, step_offset)
    if runs is not None:
        curves += _study_curves(runs, where, test_where, loss_column)
    if not curves:
        raise typer.BadParameter("give curves with --fit/--test files or --runs DIR")
    try:
        if params is not None:
            given = FitResult.load(params)
            res = evaluation_result(given.params, curves, given.law)
        else:
            res = fit_curves(curves, law, weighting=weighting, n_boot=bootstrap, seed=seed)
    except (ValueError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    _print_table(res)
    if out is not None:
        res.save(out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        from scalelaws.plots import plot_curves

        plot_curves(curves, res.params, plot, law=res.law)
        typer.echo(f"wrote {plot}")


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
):
    """Propose the LR schedule that minimises the fitted law's final loss; compare baselines."""
    from scalelaws.fitting import FitResult, write_json
    from scalelaws.schedule import cosine_schedule, optimise_schedule, wsd_schedule

    res = FitResult.load(fit)
    if res.law != "multipower":
        raise typer.BadParameter(f"needs a multipower fit, got law {res.law!r}", param_hint="--fit")
    try:
        prop = optimise_schedule(
            res.params,
            total_steps,
            warmup_steps,
            peak_lr,
            floor=floor,
            knots=knots,
            per_step=not smooth,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    doc = prop.to_dict() | {"fit": str(fit), "fit_input_hash": res.input_hash}
    write_json(out, doc)
    b = prop.baselines
    typer.echo(
        f"proposed: predicted final loss {prop.predicted_final_loss:.5f}; "
        f"cosine {b['cosine']['predicted_final_loss']:.5f}; best WSD "
        f"{b['wsd']['predicted_final_loss']:.5f} ({b['wsd']['shape']}, "
        f"decay fraction {b['wsd']['decay_fraction']:.3f}) -> {out}"
    )
    if plot is not None:
        from scalelaws.plots import plot_schedule

        fl, w = b["cosine"]["floor"], b["wsd"]
        base = {
            "cosine": cosine_schedule(total_steps, warmup_steps, peak_lr, fl),
            "wsd": wsd_schedule(
                total_steps, warmup_steps, peak_lr, w["floor"], w["decay_fraction"], w["shape"]
            ),
        }
        plot_schedule(prop.lr, res.params, plot, baselines=base)
        typer.echo(f"wrote {plot}")
