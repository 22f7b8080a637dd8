"""Sub-command groups of the `scalelab` CLI. Analysis commands register themselves here.

Heavy imports (torch, ray) stay inside the command functions so `scalelab --help` is fast.
"""

import typer

fit_app = typer.Typer(no_args_is_help=True, help="Fit a scaling law and write FitResult JSON.")
propose_app = typer.Typer(no_args_is_help=True, help="Propose the next runs from a fit.")
