"""`scalelab` command line (typer). Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.commands import capacity as _capacity  # noqa: F401  (registers `fit capacity`)
from scalelab.commands import cbs as _cbs  # noqa: F401  (registers `fit cbs`)
from scalelab.commands import chinchilla as _chinchilla  # noqa: F401  (fit chinchilla, propose size)
from scalelab.commands import fit_app, propose_app
from scalelab.commands import multipower as _multipower  # noqa: F401  (registers its commands)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="scalelab: scaling-law studies on Ray Tune + PyTorch FSDP.",
)
app.add_typer(fit_app, name="fit")
app.add_typer(propose_app, name="propose")


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
    from scalelab.train import train as run_trial

    try:
        spec = Trial.from_json(trial.read_text()).validate()
    except (SpecError, ValueError, OSError) as e:
        raise typer.BadParameter(str(e), param_hint="TRIAL") from None
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
):
    """Run a study, or resume it: finished trials are skipped, failed ones retried."""
    from scalelab import study as studies
    from scalelab.config import SpecError

    try:
        module = studies.load(study)
        root = studies.run_module(
            module,
            storage=storage or None,
            wandb_mode=None if wandb else "disabled",
            show_progress=progress,
            max_concurrent=max_concurrent or None,
            preset=preset or None,
        )
    except SpecError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    summary(root)


@app.command()
def status(
    root: Annotated[Path, typer.Argument(help="Study folder, e.g. results/quickstart")],
    all_trials: Annotated[bool, typer.Option("--all", help="List every trial.")] = False,
):
    """Table of a study's trials: completed / running / failed / diverged / pending."""
    from rich.console import Console

    from scalelab import progress as prog

    states = prog.scan(root)
    if not states:
        typer.secho(f"error: {root} holds no study (no study.json, no trials/)", fg="red", err=True)
        raise typer.Exit(2)
    Console().print(prog.table(states, root.name, show="all" if all_trials else "active"))


@app.command()
def collect(root: Annotated[Path, typer.Argument(help="Study folder, e.g. results/quickstart")]):
    """Write runs.parquet and curves.parquet for a study folder."""
    from scalelab import results

    runs, curves = results.collect(root)
    typer.echo(
        f"{len(runs)} runs, {len(curves)} curve rows -> {root}/runs.parquet, {root}/curves.parquet"
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
    from scalelab.config import SpecError
    from scalelab.migrate import migrate as run_migrate

    try:
        spec = studies.load(study).SPEC if study is not None else None
        done = run_migrate(root, spec)
    except SpecError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    for old, new in done["renamed"]:
        typer.echo(f"{old} -> {new}")
    typer.echo(
        f"{len(done['renamed'])} trial folders migrated, {len(done['kept'])} already current, "
        f"{len(done['unmatched'])} not in the study (left as they are)"
    )


def summary(root: Path) -> None:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    runs = pl.read_parquet(root / "runs.parquet")
    t = Table(title=f"{root.name}: {len(runs)} trials")
    cols = ["trial", "status", "params", "final_eval_loss", "best_eval_loss", "wall_s"]
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in runs.sort("trial").iter_rows(named=True):
        t.add_row(
            *[
                "" if r.get(c) is None else f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])
                for c in cols
            ]
        )
    Console().print(t)
    typer.echo(f"tables: {root / 'runs.parquet'}  {root / 'curves.parquet'}")


def main() -> None:
    app()


def run_file(file: str) -> None:
    """`if __name__ == "__main__": run_file(__file__)` in a study file: `scalelab run FILE`."""
    import sys

    app(["run", file, *sys.argv[1:]])


if __name__ == "__main__":
    main()
