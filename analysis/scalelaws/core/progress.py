"""Progress of long analyses (bootstrap refits, schedule optimisation): off unless asked for.

A long step takes `progress: Callable[[int, int], None] | None`, called as progress(done,
total) after each unit of work (a bootstrap refit, an optimisation stage). The library never
prints: pass a callback yourself, or let a front end install a factory for every call that
was not given one (the `scalelab` CLI shows rich progress bars on a terminal this way):

    with scalelaws.core.progress.reporting(lambda label: my_callback):
        sl.fit_multipower(...)        # progress=None here: my_callback gets (done, total)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Progress = Callable[[int, int], None]
_FACTORY: ContextVar[Callable[[str], Progress] | None] = ContextVar("progress", default=None)


@contextmanager
def reporting(factory: Callable[[str], Progress]) -> Iterator[None]:
    """Within the block, long steps given no `progress` get `factory(label)` (label: what runs,
    e.g. "bootstrap refits")."""
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)


def for_task(progress: Progress | None, label: str) -> Progress | None:
    """`progress` if given, else one from the active `reporting` factory, else None (quiet)."""
    if progress is not None:
        return progress
    factory = _FACTORY.get()
    return factory(label) if factory is not None else None
