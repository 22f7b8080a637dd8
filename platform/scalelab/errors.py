"""The one error path of the `scalelab` command line.

A user error (a bad spec, file, column or option) prints one line, `error: <what and the fix>`,
and exits 2, with no traceback unless `--debug` (or SCALELAB_DEBUG=1). Warnings print as one
line each, `warning: ...`; numerical warnings from libraries (numpy, scipy, matplotlib) are
hidden unless --debug, since every fit reports what went wrong as a diagnostic instead.
"""

from __future__ import annotations

import json
import os
import sys
import warnings


class UserError(ValueError):
    """A mistake in the input; the message names the file, field or column and the fix."""


def user_errors() -> tuple[type[BaseException], ...]:
    import polars as pl

    return (
        UserError,
        ValueError,  # SpecError and the library's one-line input errors are ValueErrors
        json.JSONDecodeError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        pl.exceptions.PolarsError,
    )


def one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename:
        text = f"{e.filename}: {e.strerror or text}"
    first = text.splitlines()[0]
    return first if len(text.splitlines()) == 1 else f"{first} ..."


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


def _click_classes():
    """(Exit, Abort, usage-error base classes) for the click that typer uses: typer >= 0.26
    vendors its own (typer._click), older typer uses click itself; catch both."""
    import click
    import typer

    exits = (typer.Exit, click.exceptions.Exit)
    aborts = (typer.Abort, click.exceptions.Abort)
    usage = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
    return exits, aborts, usage


def run_cli(app, argv: list[str]) -> None:
    """Run the typer app with the error path above; exits the process."""
    debug = "--debug" in argv or os.environ.get("SCALELAB_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    warnings.showwarning = _show_warning
    if not debug:
        for category in (RuntimeWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
    exits, aborts, usage = _click_classes()
    try:
        # without standalone mode click returns a command's typer.Exit code instead of exiting
        code = app(args=argv, standalone_mode=False, prog_name="scalelab")
    except exits as e:
        sys.exit(e.exit_code)
    except aborts:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except usage as e:  # a bad option or argument: one line and the help hint
        if type(e).__name__ == "NoArgsIsHelpError" or debug:
            e.show()
            sys.exit(getattr(e, "exit_code", 2))
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {e.format_message().splitlines()[0]}{hint}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except user_errors() as e:
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def check_writable(path, option: str) -> None:
    """Refuse an output path before any work starts: its folder must exist or be creatable and
    be writable, and the path must not be a folder."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option}: {p} is a folder; give a file path")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option}: cannot write {p} ({parent} is not writable); pick another path")
