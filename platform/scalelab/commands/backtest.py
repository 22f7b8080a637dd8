"""`scalelab backtest DIR`: refit a law without its largest scale / longest horizon / held-out
schedules, predict those, and report how often the 90% prediction intervals cover them.

    scalelab backtest results/cbs                       # CBS.json there: the CBS law
    scalelab backtest refdata/multipower/csv_25 --warmup-steps 2160 --step-offset 1 \\
        --test wsd_20000_24000 --test wsdcon_3         # a folder of step,lr,loss CSVs
    scalelab backtest runs.csv --law chinchilla       # N, D, loss[, flops, budget] as `fit chinchilla`
    scalelab backtest results/isoflop --law chinchilla --compute flops_per_token  # runs.parquet

Thin: parse → scalelaws.backtest → print → DIR/backtest.json (or --out). The splits and
diagnostics are described in scalelaws/study/backtest.py (docs/analysis.md "Back-tests").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.errors import UserError, check_writable

LAWS = ("auto", "multipower", "cbs", "capacity", "chinchilla")
COMPUTES = ("6ND", "flops_per_token", "total")  # scalelaws.chinchilla.law.COMPUTE


def _law(root: Path, law: str) -> str:
    if law != "auto":
        return law
    if (root / "CBS.json").is_file() or root.suffix == ".csv":
        return "cbs"
    if (root / "capacity.json").is_file() or (root / "CAP.json").is_file():
        return "capacity"
    return "multipower"


def _data(root: Path, law: str, tests: list[str], kw: dict):
    """What scalelaws.backtest reads for `law` from DIR, and its options."""
    if law == "cbs":
        if (root / "CBS.json").is_file():
            from scalelaws.critical_batch.fit import CBSResult

            return CBSResult.load(root / "CBS.json"), {}
        return root, {}
    if law == "capacity":
        return root, {}
    if law == "chinchilla":  # read by scalelaws.chinchilla.study.read_runs, as `fit chinchilla`
        if root.is_dir() and not (root / "runs.parquet").is_file():
            raise UserError(f"DIR: {root} has no runs.parquet; give it or a runs CSV")
        return root, {k: kw[k] for k in ("compute", "folds", "approach", "n_boot", "seed")}
    if (root / "runs.parquet").is_file():
        return root, kw
    files = sorted(root.glob("*.csv"))
    if not files:
        raise UserError(f"DIR: {root} has neither runs.parquet nor step,lr,loss CSV files")
    names = {f.stem: f for f in files}
    missing = [t for t in tests if t not in names]
    if missing:
        raise UserError(f"--test: no {missing[0]}.csv in {root}; names are {sorted(names)}")
    test = [names[t] for t in tests]
    return [f for f in files if f.stem not in tests], kw | {"test": test or None}


def _table(bt):
    from rich.table import Table

    tab = Table(title=f"back-test of {bt.law}: {100 * bt.level:.0f}% prediction intervals")
    for c in ("split", "points", "coverage", "median rel. error", "worst rel. error", "worst"):
        tab.add_column(c, justify="left" if c in ("split", "worst") else "right")
    for split in bt.splits:
        rows = [r for r in bt.rows if r["split"] == split]
        rel = sorted(r["rel_error"] for r in rows)
        w = max(rows, key=lambda r: r["rel_error"])
        tab.add_row(split, str(len(rows)), f"{sum(r['covered'] for r in rows) / len(rows):.0%}",
                    f"{rel[len(rel) // 2]:.3g}", f"{rel[-1]:.3g}", f"{w['held_out']} @ {w['x']:g}")  # fmt: skip
    return tab


def backtest(
    root: Annotated[
        Path,
        typer.Argument(
            help="Study folder, a folder of step,lr,loss CSVs, or a Chinchilla runs CSV."
        ),
    ],
    law: Annotated[str, typer.Option(help=f"One of {', '.join(LAWS)}.")] = "auto",
    test: Annotated[
        list[str] | None, typer.Option("--test", help="CSV folder: a held-out schedule (name).")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Loss rows up to it are dropped.")
    ] = None,
    step_offset: Annotated[int, typer.Option(help="Files: updates = step + offset.")] = 0,
    level: Annotated[float, typer.Option(help="Level of the prediction intervals.")] = 0.9,
    bootstrap: Annotated[
        int | None, typer.Option(help="Refits per split (multipower 20, chinchilla 200).")
    ] = None,
    compute: Annotated[
        str, typer.Option(help=f"chinchilla: FLOPs convention, one of {', '.join(COMPUTES)}.")
    ] = "6ND",
    approach: Annotated[str, typer.Option(help="chinchilla: 2, 3 or both.")] = "both",
    folds: Annotated[int, typer.Option(help="chinchilla: largest budgets held out, 1..k.")] = 3,
    seed: Annotated[int, typer.Option(help="chinchilla: bootstrap seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Default DIR/backtest.json.")] = None,
):
    """Coverage of the prediction intervals on held-out scales, horizons and schedules."""
    if law not in LAWS:
        raise UserError(f"--law: {law!r}; use one of {', '.join(LAWS)}")
    if not root.exists():
        raise UserError(f"DIR: {root} does not exist")
    out = out or (root.parent if root.is_file() else root) / "backtest.json"
    check_writable(out, "--out")
    if compute not in COMPUTES:
        raise UserError(f"--compute: {compute!r}; use one of {', '.join(COMPUTES)}")
    law = _law(root, law)
    n_boot = bootstrap if bootstrap is not None else 200 if law == "chinchilla" else 20
    kw = {"warmup_steps": warmup_steps, "step_offset": step_offset, "n_boot": n_boot,
          "compute": compute, "approach": approach, "folds": folds, "seed": seed}  # fmt: skip
    data, kw = _data(root, law, list(test or []), kw)
    if law == "multipower":
        kw = {k: v for k, v in kw.items() if k in ("warmup_steps", "step_offset", "n_boot", "test")}

    from rich.console import Console

    import scalelaws as sl
    from scalelab.commands.multipower import print_diagnostics

    bt = sl.backtest(data, law, level=level, **kw)
    Console().print(_table(bt))
    m = bt.metrics
    typer.echo(
        f"coverage {m['coverage']:.1%} of {m['n_points']} held-out points (nominal "
        f"{level:.0%}); median relative error {m['median_rel_error']:.3g}, worst "
        f"{m['worst_rel_error']:.3g} ({bt.worst['held_out']} at {bt.worst['x']:g})"
    )
    for q in dict.fromkeys(r["quantity"] for r in bt.rows) if law == "chinchilla" else ():
        typer.echo(
            f"  {q}: coverage {m[f'coverage[{q}]']:.1%} of {m[f'n_points[{q}]']}, median "
            f"relative error {m[f'median_rel_error[{q}]']:.3g}"
        )
    print_diagnostics(bt.diagnostics)
    bt.to_json(out)
    typer.echo(f"wrote {out}")
