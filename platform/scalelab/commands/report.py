"""`scalelab report DIR` and `scalelab dashboard DIR`: where researchers look at a study.

Thin: the page is scalelaws.study.report (it fits nothing), the W&B view is
scalelab.tracking.dashboard, the analysis run scalelab.tracking.analysis_run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalelab.errors import UserError, check_writable

STUDY = Annotated[Path, typer.Argument(help="Study folder, e.g. results/quickstart")]


def _check_study(root: Path) -> None:
    if not (root / "runs.parquet").is_file():
        raise UserError(
            f"STUDY: {root} has no runs.parquet; give a study folder such as results/quickstart "
            f"(run `scalelab collect {root}` first if its trials are there)"
        )


def report(
    study: STUDY,
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default DIR/report.html).")
    ] = None,
):
    """One self-contained HTML page: status, runs, curves by grid key, every fit in the folder
    with its intervals and diagnostics, proposals, predicted vs measured. Needs no network."""
    _check_study(study)
    if out is not None:
        check_writable(out, "--out")
    from scalelaws.study.report import write_report

    path = write_report(study, out)
    typer.echo(f"report: {path.resolve()}  (open it in a browser)")


def dashboard(
    study: STUDY,
    out: Annotated[
        Path | None, typer.Option(help="View definition (default DIR/wandb_view.json).")
    ] = None,
    entity: Annotated[str, typer.Option(help="W&B entity (default $WANDB_ENTITY / yours).")] = "",
    project: Annotated[
        str, typer.Option(help="W&B project (default $WANDB_PROJECT or scalelab).")
    ] = "",
    log: Annotated[
        bool | None,
        typer.Option(help="Log the study's analysis run first (default: when it has none)."),
    ] = None,
    publish: Annotated[
        bool | None, typer.Option(help="Save the view to W&B (default: when logged in).")
    ] = None,
):
    """The W&B view of a study (loss per grid value, final loss against each grid key, parallel
    coordinates, fit plots): saved to W&B with a login, else written to a JSON file."""
    _check_study(study)
    if out is not None:
        check_writable(out, "--out")
    from scalelab.tracking import analysis_run
    from scalelab.tracking import dashboard as dash

    if log if log is not None else not list(study.glob("wandb/*run-*")):
        run_dir = analysis_run.log_analysis(study, reason="dashboard")
        typer.echo(f"analysis run: {run_dir}")
    path, view = dash.write_view(study, out, entity=entity or None, project=project or None)
    typer.echo(f"view definition: {path}")
    if not dash.has_workspaces():
        typer.echo("wandb-workspaces is not installed: pip install -e '.[wandb-views]' to save it")
        return
    if publish if publish is not None else dash.logged_in():
        try:
            url = dash.publish(view)
        except Exception as e:  # the network or the W&B service: the file is still there
            raise UserError(f"could not save the view to W&B ({e}); it is in {path}") from None
        typer.echo(f"W&B view: {url}")
        return
    typer.echo(
        "no W&B login: to publish, `wandb login`, upload the runs with `wandb sync "
        f"{study}/trials/*/wandb/offline-run-* {study}/wandb/offline-run-*`, then run "
        f"`scalelab dashboard {study} --publish`"
    )
