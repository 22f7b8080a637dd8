"""Progress bars for long analyses run from the CLI (bootstrap refits, schedule optimisation).

The library is quiet by default (scalelaws.core.progress); `scalelab` installs this reporter for
every command, like the live table of a sweep: rich bars on a terminal, nothing otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def shown(enabled: bool | None = None, console: Console | None = None) -> Iterator[None]:
    """Within the block, every long library step without its own `progress` gets a bar.
    enabled: default, when stderr is a terminal."""
    console = console or Console(stderr=True)
    if enabled is None:
        enabled = sys.stderr.isatty() and console.is_terminal
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    import scalelaws.core.progress as lib

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bars = Progress(*columns, console=console)
    started = False

    def factory(label: str):
        nonlocal started
        if not started:  # lazily: a sweep's live table may hold the terminal until then
            bars.start()
            started = True
        task = bars.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        return update

    try:
        with lib.reporting(factory):
            yield
    finally:
        if started:
            bars.stop()
