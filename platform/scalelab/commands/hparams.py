"""`scalelab fit hparams` and `scalelab propose hparams`: the optimal peak LR η* and batch size
B* per (N, D) cell, their power laws in N, D and C = 6ND, and the next runs at a new size
(DeepSeek LLM 2024, Step Law 2025, Power Lines 2025; docs/laws.md §9, docs/hparams.md).

    scalelab fit hparams --runs DIR [--loss-col final_eval_loss] [--where SQL]
    scalelab fit hparams RUNS.csv|RUNS.parquet [--params-col params] [--tokens-col tokens]
        [--lr-col lr] [--batch-col batch_size] [--batch-unit tokens|sequences]
        [--loss-col loss] [--seed-col seed]
      [--n-boot 200] [--rng-seed 0] [--out hparams.json] [--plot PNG | --no-plot]
    scalelab propose hparams FIT.json --params N --tokens D [--seq-len L] [--level 0.9]
        [--out study_points.json]

Parse → scalelaws (study_runs, fit_hparams; HparamsFit.predict / .penalty) → print every
estimate and every diagnostic → write the result JSON (Result.to_json) and the figure. Bad
input prints one line and exits 2 before anything is written (scalelab.errors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import fit_app, propose_app
from scalelab.commands.chinchilla import make_console
from scalelab.errors import UserError, check_writable

UNITS = {"tokens": "tokens per optimizer step", "sequences": "sequences per optimizer step"}
FILE_OPTIONS = ("--params-col", "--tokens-col", "--lr-col", "--batch-col", "--seed-col")
FILE_OPTIONS += ("--batch-unit",)
OUT = "hparams.json"


def _g(v, fmt: str = ".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _with_iv(v, lo, hi) -> str:
    return _g(v, ".3g") + (f" [{_g(lo, '.3g')}, {_g(hi, '.3g')}]" if hi is not None else "")


def print_fit(console, fit, left_out: list[str]) -> None:
    """The cells (η*, B*, L*, intervals, status, flags), the laws, the curvature, and every
    diagnostic line."""
    from rich.table import Table

    from scalelaws.study.hparams import cells_table, curvature_text

    for line in left_out:
        console.print(line, markup=False)
    unit = fit.info.get("batch_unit", "")
    t = Table(title=f"Optimum per (N, D) cell (95% bootstrap; B in {unit})")
    cells = cells_table(fit)
    for c in ("cell", "lr*", "lr status", "B*", "B status", "L*", "flags"):
        t.add_column(c, justify="left" if c in ("cell", "flags") else "right", no_wrap=c == "cell")
    for r in cells.iter_rows(named=True):
        t.add_row(
            r["cell"],
            _with_iv(r["lr*"], r["lr* lo"], r["lr* hi"]),
            r["lr status"],
            _with_iv(r["B*"], r["B* lo"], r["B* hi"]),
            r["B status"],
            _g(r["L*"], ".5g"),
            r["flags"],
        )
    console.print(t)
    for key, law in fit.laws.items():
        sym = "lr*" if law["target"] == "lr" else "B*"
        terms = "·".join(
            f"{v}^{e:.3f} [{law['exponent_intervals'][v][0]:.3f}, "
            f"{law['exponent_intervals'][v][1]:.3f}]"
            for v, e in law["exponents"].items()
        )
        console.print(
            f"{key}: {sym} = {law['coef']:.4g}·{terms} (95%; r² {law['r2']:.3f}, σ(ln) "
            f"{law['sigma']:.3g}, {law['n']} cells)",
            markup=False,
        )
    console.print(
        f"curvature: {curvature_text(fit)} (δ in ln units, pooled over cells); "
        f"{fit.info['cells']} cells, {fit.info['rows']} runs, bootstrap {fit.info['n_boot']}",
        markup=False,
    )
    for d in fit.diagnostics:
        console.print(d.line(), markup=False, style="yellow" if d.severity != "info" else "dim")


def _read_table(table: Path):
    import polars as pl

    if not table.is_file():
        raise UserError(f"RUNS: no file {table}; give a CSV or Parquet file, one row per run")
    if table.suffix.lower() == ".csv":
        return pl.read_csv(table)
    if table.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(table)
    raise UserError(f"RUNS: {table} is neither .csv nor .parquet; give one of those")


@fit_app.command("hparams")
def fit_hparams(
    table: Annotated[
        Path | None,
        typer.Argument(
            help="CSV or Parquet, one row per finished run: N, D, peak LR, batch size, final "
            "loss (column names: the --*-col options)."
        ),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            "--runs",
            help="Study folder with runs.parquet: N = params (non-embedding), D = tokens, "
            "lr, B = batch_size·seq_len tokens, seed; completed runs with a finite loss.",
        ),
    ] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="--runs: SQL filter of the runs.")
    ] = None,
    params_col: Annotated[str | None, typer.Option("--params-col", help="N column.")] = None,
    tokens_col: Annotated[str | None, typer.Option("--tokens-col", help="D column.")] = None,
    lr_col: Annotated[str | None, typer.Option("--lr-col", help="Peak LR column.")] = None,
    batch_col: Annotated[str | None, typer.Option("--batch-col", help="Batch column.")] = None,
    batch_unit: Annotated[
        str | None,
        typer.Option("--batch-unit", help="What the batch column counts per step (tokens)."),
    ] = None,
    loss_col: Annotated[
        str | None,
        typer.Option(
            "--loss-col", help="Final loss column (default loss; --runs final_eval_loss)."
        ),
    ] = None,
    seed_col: Annotated[str | None, typer.Option("--seed-col", help="Seed column.")] = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap resamples per cell (0: no intervals).")
    ] = 200,
    rng_seed: Annotated[int, typer.Option("--rng-seed", help="Bootstrap seed.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help=f"Result JSON; default DIR/{OUT} with --runs, else ./{OUT}."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Figure; default: --out with .png.")
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Write no figure.")] = False,
) -> None:
    """Optimal peak LR and batch size per (N, D) cell, and their laws in N, D and C = 6ND.

    Prints each cell's optimum with its interval and status, the laws, and every diagnostic;
    writes the result JSON and its figure (docs/hparams.md)."""
    import scalelaws as sl
    from scalelaws.study.hparams import study_runs

    if (table is None) == (runs is None):
        raise UserError("give exactly one of RUNS.csv|.parquet or --runs DIR")
    file_only = (params_col, tokens_col, lr_col, batch_col, seed_col, batch_unit)
    given = [o for o, v in zip(FILE_OPTIONS, file_only, strict=True) if v is not None]
    if runs is not None and given:
        raise UserError(f"{given[0]}: applies to a RUNS file; a study's columns are fixed")
    if runs is None and where is not None:
        raise UserError("--where: applies to --runs DIR only; filter the file before fitting")
    batch_unit = batch_unit or "tokens"
    if batch_unit not in UNITS:
        raise UserError(f"--batch-unit {batch_unit!r}: use tokens or sequences")
    if n_boot < 0:
        raise UserError(f"--n-boot {n_boot}: must be >= 0 (0 = no intervals)")
    out = out or (runs / OUT if runs is not None else Path(OUT))
    plot = None if no_plot else plot or out.with_suffix(".png")
    for path, option in ((out, "--out"), (plot, "--plot")):
        if path is not None:
            check_writable(path, option)
    if runs is not None:
        picked = study_runs(sl.load_study(runs), loss=loss_col or "final_eval_loss", where=where)
        frame, cols, left = picked.frame, picked.columns, picked.lines()
    else:
        frame, left = _read_table(table), []
        names = (params_col, tokens_col, lr_col, batch_col, loss_col)
        keys = ("params", "tokens", "lr", "batch", "loss")
        cols = {k: v for k, v in zip(keys, names, strict=True) if v is not None}
        cols |= {"seed": seed_col, "batch_unit": UNITS[batch_unit]}
    try:
        fit = sl.fit_hparams(frame, **cols, n_boot=n_boot, rng_seed=rng_seed)
    except ValueError as e:  # the library names its keyword; a RUNS file names the option
        text = str(e)
        for field in ("params", "tokens", "lr", "batch", "loss", "seed"):
            text = text.replace(f"pass {field}='<your column>'", f"give --{field}-col COLUMN")
        raise UserError(text) from None
    console = make_console()
    print_fit(console, fit, left)
    fit.to_json(out)
    console.print(f"wrote {out}", markup=False)
    if plot is not None:
        fit.plot(plot)
        console.print(f"plot: {plot}", markup=False)


def study_points(fit, params: float, tokens: float, seq_len: int, level: float) -> dict:
    """The prediction at (N, D) (HparamsFit.predict) as a result dict, with `point` (η*, B* in
    sequences = round(B*/seq_len) for a B in tokens, total_steps = D // (batch·seq_len)),
    `points` (its 3x3 neighbourhood, scalelab.sweep.lr_batch_neighbourhood: dicts that
    SweepSpec(points=...) takes) and `neighbourhood` (each point's factors and the predicted
    loss penalty over the optimum, HparamsFit.penalty). Diagnostics: the prediction's, then
    the penalties' own (a step beyond the swept range)."""
    from scalelab.sweep import lr_batch_neighbourhood

    unit = str(fit.info.get("batch_unit", ""))
    if not unit.startswith(("token", "sequence")):
        raise UserError(f"{unit!r}: the fit's batch unit is neither tokens nor sequences per step")
    per_seq = seq_len if unit.startswith("token") else 1
    pred = fit.predict(params, tokens, level)
    if not (math.isfinite(pred.lr) and math.isfinite(pred.batch)):
        missing = "lr*" if not math.isfinite(pred.lr) else "B*"
        raise UserError(f"{missing}: the fit has no law of it (see its diagnostics); no points")
    batch = max(1, round(pred.batch / per_seq))
    points = lr_batch_neighbourhood(pred.lr, batch, tokens, seq_len)
    factors = [(fl, fb) for fl in (0.5, 1.0, 2.0) for fb in (0.5, 1.0, 2.0)]
    diags = list(pred.diagnostics)
    seen = {d.line() for d in diags}
    rows = []
    for (fl, fb), point in zip(factors, points, strict=True):
        pen = fit.penalty(params, tokens, point["optim.lr"], point["batch_size"] * per_seq)
        for d in pen.diagnostics:
            if d.line() not in seen:
                seen.add(d.line())
                diags.append(d)
        rows.append(
            {"lr_factor": fl, "batch_factor": fb, "point": point}
            | {"penalty_nats": pen.params["nats"], "penalty_range": pen.intervals.get("nats")}
        )
    doc = pred.to_dict() | {"kind": "HparamsStudyPoints"}
    doc["diagnostics"] = [d.to_dict() for d in diags]
    doc["info"] = doc["info"] | {
        "seq_len": seq_len,
        "batch_size_unit": "sequences per optimizer step",
        "rule": "batch_size = round(B*/seq_len) (B* in tokens), total_steps = "
        "D // (batch_size·seq_len), lr to 3 significant figures",
    }
    doc |= {"point": points[4], "points": points, "neighbourhood": rows}
    from scalelaws.io import jsonable

    return jsonable(doc)


def print_points(console, fit, res: dict) -> None:
    """η*, B* (and every fitted form) with their intervals, the points and their penalties,
    every diagnostic, and the fit's own warnings by code."""
    from rich.table import Table

    from scalelaws.core.diagnostics import Diagnostic

    info, p, iv = res["info"], res["params"], res["intervals"]
    pct = f"{100 * info['level']:g}%"
    t = Table(
        title=f"Predicted optimum at N = {info['params']:.4g}, D = {info['tokens']:.4g} "
        f"(C = {info['flops']:.3g} FLOPs; {pct} prediction intervals)"
    )
    for c in ("quantity", "form", "value", f"{pct} interval"):
        t.add_column(c, justify="left" if c == "quantity" else "right")
    for key in sorted((k for k in p if "~" in k), key=lambda k: (k[:2] != "lr", k)):
        target, _, form = key.partition("~")
        name = "lr*" if target == "lr" else f"B* ({info['batch_unit']})"
        lo, hi = iv.get(key) or (None, None)
        used = " (used)" if form == info["form"][target] else ""
        t.add_row(name, form + used, _g(p[key]), f"[{_g(lo)}, {_g(hi)}]")
    console.print(t)
    t = Table(title=f"Study points (seq_len {info['seq_len']} from {info['seq_len_from']})")
    for c in ("lr x", "B x", "optim.lr", "batch_size", "total_steps", "tokens", "ΔL (nats)"):
        t.add_column(c, justify="right")
    for r in res["neighbourhood"]:
        pt, rng = r["point"], r["penalty_range"]
        span = f" [{_g(rng[0], '.3g')}, {_g(rng[1], '.3g')}]" if rng else ""
        t.add_row(
            f"{r['lr_factor']:g}",
            f"{r['batch_factor']:g}",
            f"{pt['optim.lr']:g}",
            str(pt["batch_size"]),
            str(pt["total_steps"]),
            f"{pt['total_steps'] * pt['batch_size'] * info['seq_len']:,}",
            _g(r["penalty_nats"], ".3g") + span,
        )
    console.print(t)
    console.print(
        "ΔL: the predicted loss increase over the optimum (pooled curvature; in brackets its "
        "range over the fitted cells' own curvatures)",
        markup=False,
    )
    for d in map(Diagnostic.from_dict, res["diagnostics"]):
        console.print(d.line(), markup=False, style="yellow" if d.severity != "info" else "dim")
    warned = sorted({d.code for d in fit.diagnostics if d.severity != "info"})
    if warned:
        console.print(f"the fit had warnings: {', '.join(warned)}", markup=False)


def _seq_len(fit_path: Path, given: int | None) -> tuple[int, str]:
    """--seq-len, else the one sequence length of the study folder that holds FIT.json."""
    if given is not None:
        if given < 1:
            raise UserError(f"--seq-len {given}: must be >= 1 (tokens per sequence)")
        return given, "--seq-len"
    runs = fit_path.parent / "runs.parquet"
    if runs.is_file():
        import polars as pl

        values = pl.read_parquet(runs, columns=["seq_len"])["seq_len"].unique().to_list()
        if len(values) == 1 and values[0]:
            return int(values[0]), str(runs)
    raise UserError(
        "--seq-len: give the sequence length (tokens per sequence) of the runs to propose; "
        f"{fit_path.parent} holds no study with one seq_len"
    )


@propose_app.command("hparams")
def propose_hparams(
    fit_path: Annotated[
        Path, typer.Argument(metavar="FIT.json", help="The JSON of `scalelab fit hparams`.")
    ],
    params: Annotated[float, typer.Option("--params", help="Model size N (parameters).")],
    tokens: Annotated[float, typer.Option("--tokens", help="Training tokens D.")],
    seq_len: Annotated[
        int | None,
        typer.Option("--seq-len", help="Tokens per sequence (default: the fit's study's)."),
    ] = None,
    level: Annotated[float, typer.Option("--level", help="Prediction interval level.")] = 0.9,
    out: Annotated[Path | None, typer.Option("--out", help="Write the study points here.")] = None,
) -> None:
    """η* and B* at (N, D) with prediction intervals, as study points for the next sweep.

    The points: the predicted optimum and its 3x3 neighbourhood (lr and batch size x 1/2, 1,
    2), each with its predicted loss penalty; every diagnostic is printed."""
    from scalelaws.hparams.fit import HparamsFit

    for name, v in (("--params", params), ("--tokens", tokens)):
        if not (math.isfinite(v) and v > 0):
            raise UserError(f"{name} {v}: must be finite and > 0")
    if out is not None:
        check_writable(out, "--out")
    if not fit_path.is_file():
        raise UserError(f"FIT.json: no file {fit_path}; give the JSON of `scalelab fit hparams`")
    import json

    doc = json.loads(fit_path.read_text())
    if not isinstance(doc, dict) or doc.get("kind") != "HparamsFit":
        raise UserError(f"{fit_path}: not a `scalelab fit hparams` result (kind HparamsFit)")
    fit = HparamsFit.from_dict(doc)
    length, source = _seq_len(fit_path, seq_len)
    res = study_points(fit, params, tokens, length, level)
    res["info"] |= {"fit": str(fit_path), "seq_len_from": source}
    print_points(make_console(), fit, res)
    if out is not None:
        from scalelaws.io import write_json

        write_json(out, res)
        typer.echo(f"wrote {out}")
