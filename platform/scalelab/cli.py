"""`scalelab` command line (typer). Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import backtest as _backtest
from scalelab.commands import capacity as _capacity  # noqa: F401  (registers `fit capacity`)
from scalelab.commands import cbs as _cbs  # noqa: F401  (registers `fit cbs`)
from scalelab.commands import chinchilla as _chinchilla  # noqa: F401  (fit chinchilla, propose size)
from scalelab.commands import fit_app, propose_app
from scalelab.commands import hparams as _hparams  # noqa: F401  (fit hparams, propose hparams)
from scalelab.commands import multipower as _multipower  # noqa: F401  (registers its commands)
from scalelab.commands import report as _report
from scalelab.commands.data import data_app
from scalelab.errors import UserError, run_cli

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="scalelab: scaling-law studies on Ray Tune + PyTorch FSDP. "
    "User errors print one line and exit 2; add --debug for the traceback.",
)
app.add_typer(fit_app, name="fit")
app.add_typer(propose_app, name="propose")
app.add_typer(data_app, name="data")


@app.command()
def train(
    trial: Annotated[
        Path, typer.Argument(help='TRIAL.json: {"spec": TrialSpec, "run": RunConfig} (or a spec).')
    ],
    out: Annotated[Path, typer.Option(help="Trial folder for curve.parquet, trial.json.")],
    wandb: Annotated[str, typer.Option(help="W&B mode: offline, online or disabled.")] = "disabled",
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint.")] = True,
):
    """Run one trial in this process (or under torchrun with several ranks)."""
    from scalelab.config import SpecError, Trial

    if not trial.is_file():
        raise UserError(f"TRIAL: no file {trial}; give a trial JSON file")
    try:
        spec = Trial.from_json(trial.read_text()).validate()
    except SpecError as e:
        raise UserError(f"{trial}: {e}") from None
    from scalelab.train import train as run_trial

    rec = run_trial(spec, out, wandb_mode=wandb, resume=resume)
    typer.echo(
        f"{spec.name}: {rec['status']} after {rec['steps_done']} steps, "
        f"final eval loss {rec['final_eval_loss']}, {rec['wall_s']:.1f}s -> {out}"
    )
    if rec["status"] != "completed":
        raise typer.Exit(2)


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="Study file, e.g. experiments/quickstart.py")],
    storage: Annotated[str, typer.Option(help="Results folder; default results/<study>.")] = "",
    preset: Annotated[str, typer.Option(help="A named preset of the study (PRESETS).")] = "",
    wandb: Annotated[bool, typer.Option(help="Log to W&B (WANDB_MODE, default offline).")] = True,
    progress: Annotated[bool, typer.Option(help="Live progress table.")] = True,
    max_concurrent: Annotated[int, typer.Option(help="Cap concurrent trials (0 = fit).")] = 0,
    reanalyse: Annotated[
        bool,
        typer.Option(help="Run the study's after() analysis even if its tables are unchanged."),
    ] = False,
    placement: Annotated[
        list[str] | None,
        typer.Option(
            "--placement",
            "-p",
            help="Set a RunConfig field for this run, KEY=VALUE (repeat): e.g. -p device=cuda "
            "-p gpus_per_worker=0.25. Placement only: no trial is renamed or rerun.",
        ),
    ] = None,
):
    """Run a study, or resume it: finished trials are skipped, failed ones retried."""
    from scalelab import study as studies

    module = studies.load(study)
    root = studies.run_module(
        module,
        storage=storage or None,
        wandb_mode=None if wandb else "disabled",
        show_progress=progress,
        max_concurrent=max_concurrent or None,
        preset=preset or None,
        reanalyse=reanalyse,
        placement=placement,
    )
    summary(root)


@app.command()
def status(
    root: Annotated[Path, typer.Argument(help="Study folder, e.g. results/quickstart")],
    all_trials: Annotated[bool, typer.Option("--all", help="List every trial.")] = False,
):
    """Table of a study's trials: completed / running / failed / diverged / pending, and every
    trial folder whose record cannot be trusted (corrupt, mismatch), named by file."""
    from rich.console import Console

    from scalelab import progress as prog
    from scalelab.results import NoStudy, trial_dirs

    try:
        trial_dirs(root)
    except NoStudy as e:
        raise UserError(str(e)) from None
    states = prog.scan(root)
    Console().print(prog.table(states, root.name, show="all" if all_trials else "active"))
    if line := _prefix_line(root):
        typer.echo(line)
    for v in states.values():
        if v["state"] in ("corrupt", "mismatch"):
            typer.echo(f"{v['state']}: {v['error']}", err=True)


@app.command()
def collect(root: Annotated[Path, typer.Argument(help="Study folder, e.g. results/quickstart")]):
    """Write runs.parquet and curves.parquet for a study folder; name every file left out."""
    import warnings

    from scalelab import results

    problems: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs, curves = results.collect(root, problems=problems)
    except results.NoStudy as e:
        raise UserError(str(e)) from None
    for p in problems:
        typer.echo(f"warning: {p}", err=True)
    typer.echo(
        f"{len(runs)} runs, {len(curves)} curve rows -> {root}/runs.parquet, {root}/curves.parquet"
        + (f" ({len(problems)} problem(s) above)" if problems else "")
    )


@app.command()
def migrate(
    root: Annotated[Path, typer.Argument(help="Study folder written by scalelab 0.1")],
    study: Annotated[
        Path | None, typer.Option(help="Study file (default: the sweep in study.json).")
    ] = None,
):
    """Convert an old results folder in place (identity/placement split); recomputes nothing."""
    from scalelab import study as studies
    from scalelab.migrate import migrate as run_migrate

    spec = studies.load(study).SPEC if study is not None else None
    done = run_migrate(root, spec)
    for old, new in done["renamed"]:
        typer.echo(f"{old} -> {new}")
    typer.echo(
        f"{len(done['renamed'])} trial folders migrated, {len(done['kept'])} already current, "
        f"{len(done['unmatched'])} not in the study (left as they are)"
    )


app.command()(_report.report)
app.command()(_backtest.backtest)
app.command()(_report.dashboard)


def _prefix_line(root: Path) -> str | None:
    """The study's prefix tree as its last run planned it (prefix.json), in one line."""
    from scalelab import files, prefix

    try:
        plan = files.read_json(root / "prefix.json")
        counts = (len(plan["forks"]), len(plan["fork_steps"]))
        line = prefix.savings(plan["trained_steps"], plan["scratch_steps"], *counts)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"shared prefixes: the study {line} (prefix.json)" if counts[0] else None


def summary(root: Path) -> None:
    """Counts, failures and the best trial per grid value (`scalelab status --all`: every trial)."""
    import polars as pl

    from scalelab.summary import lines

    for line in lines(pl.read_parquet(root / "runs.parquet")):
        typer.echo(line)
    typer.echo(f"tables: {root / 'runs.parquet'}  {root / 'curves.parquet'}")


def main(argv: list[str] | None = None) -> None:
    """The `scalelab` console script: user errors are one line and exit 2 (errors.py)."""
    import sys

    from scalelab.progress import shown
    from scalelab.tracking.hooks import after_command

    with shown():  # progress bars for bootstrap fits and schedule optimisation on a terminal
        run_cli(after_command(app), sys.argv[1:] if argv is None else argv)


def run_file(file: str) -> None:
    """`if __name__ == "__main__": run_file(__file__)` in a study file: `scalelab run FILE`."""
    import sys

    main(["run", file, *sys.argv[1:]])


if __name__ == "__main__":
    main()
