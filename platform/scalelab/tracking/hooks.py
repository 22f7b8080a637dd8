"""What the CLI does after a command succeeds: `scalelab fit ... --runs DIR --out FIT.json`
logs the study's W&B analysis run with that fit (analysis_run.py) when W&B is on for the
study: WANDB_MODE is set (and not `disabled`), or its trials logged to W&B."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def after_command(app):
    """`app` (a typer app, called by errors.run_cli) followed by the hook of its command."""

    def call(*args, **kwargs):
        code = app(*args, **kwargs)
        if not code:
            after_fit(list(kwargs.get("args") or []))
        return code

    return call


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv (the last one), else None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def after_fit(argv: list[str]) -> None:
    if not argv or argv[0] != "fit":
        return
    runs, out = option(argv, "--runs"), option(argv, "--out")
    if runs and not out and argv[1:2] == ["hparams"]:  # its default: the study folder
        from scalelab.commands.hparams import OUT

        out = str(Path(runs) / OUT)
    if not runs or not out or not Path(out).is_file():
        return
    from scalelab.tracking import analysis_run
    from scalelab.tracking.runs import wandb_on

    root, mode = Path(runs), os.environ.get("WANDB_MODE")
    if not (wandb_on(mode) or (mode is None and analysis_run.study_uses_wandb(root))):
        return
    plot = None if "--no-plot" in argv else option(argv, "--plot")
    try:
        run_dir = analysis_run.log_analysis(
            root, mode=mode, reason="fit", extra=[(Path(out), Path(plot) if plot else None)]
        )
    except Exception as e:  # the fit is written; W&B trouble must not turn it into a failure
        print(f"warning: W&B analysis run not logged: {e}", file=sys.stderr)
        return
    print(f"W&B analysis run: {run_dir}", file=sys.stderr)
