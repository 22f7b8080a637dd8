"""Long analyses report progress: the library calls progress(done, total) when asked (quiet by
default); the CLI shows rich bars on a terminal and nothing otherwise."""

from __future__ import annotations

import io

import polars as pl
import pytest
from analysis_data import mpl_study
from rich.console import Console

import scalelaws as sl
import scalelaws.core.progress as lib
from scalelab.progress import shown


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    study = sl.load_study(mpl_study(tmp_path_factory.mktemp("mpl"), total=400))
    s0 = study.curves.filter(pl.col("grid.seed") == 0)
    fitted = s0.filter(pl.col("grid.schedule").is_in(["constant", "cosine", "wsdcon"]))
    return study, fitted


def test_bootstrap_and_schedule_optimisation_report_progress(curves):
    study, fitted = curves
    calls = []
    fit = sl.fit_multipower(fitted, study=study, n_boot=5, progress=lambda *a: calls.append(a))
    assert calls == [(i, 5) for i in range(1, 6)]  # one call per bootstrap refit
    assert fit.info["n_boot"] == 5
    calls.clear()
    prop = sl.propose_schedule(
        fit, 400, 1e-3, warmup_steps=100, progress=lambda *a: calls.append(a)
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]  # baselines, knots, per step
    assert prop.lr.size == 400


def test_quiet_by_default_and_a_front_end_can_turn_it_on(curves, capsys):
    study, fitted = curves
    assert lib.for_task(None, "x") is None  # no callback, no reporter: quiet
    sl.fit_multipower(fitted, study=study, n_boot=2)
    assert capsys.readouterr() == ("", "")
    seen: dict[str, list] = {}

    def factory(label):
        return lambda done, total: seen.setdefault(label, []).append((done, total))

    with lib.reporting(factory):
        fit = sl.fit_multipower(fitted, study=study, n_boot=3)
        sl.propose_schedule(fit, 400, 1e-3, warmup_steps=100)
        mine = []  # an explicit callback wins over the reporter
        sl.fit_multipower(fitted, study=study, n_boot=2, progress=lambda *a: mine.append(a))
    assert seen == {
        "bootstrap refits": [(1, 3), (2, 3), (3, 3)],
        "schedule optimisation": [(1, 3), (2, 3), (3, 3)],
    }
    assert mine == [(1, 2), (2, 2)] and lib.for_task(None, "x") is None  # reset after


def test_cli_reporter_draws_rich_bars_on_a_terminal_only(curves):
    study, fitted = curves
    out = io.StringIO()
    term = Console(file=out, force_terminal=True, width=100)
    with shown(enabled=True, console=term):
        sl.fit_multipower(fitted, study=study, n_boot=4)
    text = out.getvalue()
    assert "bootstrap refits" in text and "4/4" in text
    plain = io.StringIO()
    with shown(console=Console(file=plain, force_terminal=False)):  # not a terminal
        assert lib.for_task(None, "x") is None
        sl.fit_multipower(fitted, study=study, n_boot=2)
    assert plain.getvalue() == ""
