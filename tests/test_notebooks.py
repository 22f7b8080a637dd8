"""The analysis notebooks (analysis/notebooks/*.ipynb) run top to bottom on the study fixtures
(tests/data/README_studies.md) in a real Jupyter kernel, and show what they promise.

They are stored without outputs; the study comes from $SCALELAB_STUDY or a papermill-style
override of the `parameters` cell, as a reader would give it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "analysis" / "notebooks"
DATA = REPO / "tests" / "data"
ALL = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def execute(name: str, study: Path, monkeypatch, override: dict | None = None):
    """Run notebook `name` on `study` (via $SCALELAB_STUDY, or `override` values injected after
    the parameters cell, as papermill does); return the executed notebook."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    monkeypatch.setenv("SCALELAB_STUDY", str(study))
    if override:
        i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        src = "\n".join(f"{k} = {v!r}" for k, v in override.items())
        nb.cells.insert(i + 1, nbformat.v4.new_code_cell(src))
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def outputs(nb) -> tuple[str, str, int]:
    """(all text/plain and stream text, all text/html, number of PNG images) of a notebook."""
    text, html, images = [], [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            html.append(data.get("text/html", ""))
            images += "image/png" in data
    return "\n".join(text), "\n".join(html), images


def test_notebooks_are_stored_without_outputs_and_take_a_study_parameter():
    assert set(ALL) == {"study_overview", "multipower", "critical_batch", "capacity", "hparams"}
    for name in ALL:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), name
        params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
        assert len(params) == 1 and "STUDY = " in "".join(params[0]["source"]), name
        source = "".join("".join(c["source"]) for c in code)
        assert "SCALELAB_STUDY" in source and "import scalelaws as sl" in source, name
        # the public API only: no private scalelaws names, no fitting code of its own
        assert not re.search(r"scalelaws\.\w+ import _|sl\._", source), name
        assert "scipy" not in source and "curve_fit" not in source, name


def test_study_overview_on_the_quickstart_fixture(monkeypatch):
    nb = execute("study_overview", DATA / "study_quickstart", monkeypatch)
    text, html, images = outputs(nb)
    assert "completed: 8" in text
    assert "grid keys: ['model.size', 'schedule']" in text
    for trial in pl.read_parquet(DATA / "study_quickstart" / "runs.parquet")["trial"]:
        assert trial in html  # the runs table, every trial
    assert images == 4  # curves and final loss, for each of the 2 grid keys
    assert "Multi-power law fit (mpl_fit.json): 1 diagnostic(s)" in text
    assert "Proposed LR schedule (proposed_schedule.json)" in text


def test_study_overview_takes_any_study_through_its_parameters_cell(monkeypatch):
    """A papermill-style override wins over $SCALELAB_STUDY; a study with other grid keys."""
    nb = execute(
        "study_overview",
        DATA / "study_quickstart",
        monkeypatch,
        override={"STUDY": str(DATA / "study_cbs")},
    )
    text, _, images = outputs(nb)
    assert "study_cbs" in text and "completed: 16" in text
    assert "grid keys: ['model.size', 'batch_size', 'optim.lr', 'total_steps']" in text
    assert images == 8
    assert "Critical batch size (EWA eval loss) (CBS.json)" in text


def test_multipower_fits_predicts_proposes_and_closes_the_loop(monkeypatch):
    nb = execute("multipower", DATA / "study_quickstart", monkeypatch)
    text, html, images = outputs(nb)
    assert "model 14K: fitted on 3 curves, 1 held out" in text
    assert all(p in html for p in ("L0", "alpha", "gamma"))  # the parameter table
    assert "PARAM_AT_BOUND" in text  # the fit's diagnostics are shown
    assert re.search(r"proposed: 0\.\d+ \(0\.\d+, 0\.\d+\)", text)  # with its interval
    # a held-out schedule's last step with its prediction interval, and the back-test
    assert re.search(
        r"wsd\S+ at step 200: predicted 0\.\d+, 90% prediction interval \[0\.\d+, 0\.\d+\]; "
        r"measured 0\.\d+ \((inside|outside)\)",
        text,
    )
    assert re.search(r"\d+% of \d+ held-out points inside the 90% prediction intervals", text)
    assert "held-out schedules" in html and "steps &gt; 100" in html  # coverage per split
    assert "closed loop (study_quickstart_validate)" in text
    assert all(s in html for s in ("proposed", "cosine", "wsd"))  # predicted vs measured
    assert "paired by seed (95% t-interval)" in text and "proposed − cosine" in html
    assert "TOO_FEW_SEEDS (cosine)" in text  # the fixture ran 2 seeds
    assert images == 3  # fit and prediction, schedules, predicted vs measured


def test_critical_batch_recovers_the_fixture_b_crit(monkeypatch):
    nb = execute("critical_batch", DATA / "study_cbs", monkeypatch)
    text, html, images = outputs(nb)
    assert "b_crit_interval" in html  # the groups table
    # per D, the synthetic truth (McCandlish et al.'s S(B) law): B_crit = 40 (6K), 60 (14K)
    assert len(re.findall(r"^6K/D=\S+: B_crit = 40\.0 \[", text, re.M)) == 3
    assert len(re.findall(r"^14K/D=\S+: B_crit = 60\.0 \[", text, re.M)) == 3
    assert images == 1 and "params" in text and "steps to target" in text
    assert re.search(r"CBS at N = 27,888: [\d.]+ sequences, 90% prediction interval \[", text)
    assert "EXTRAPOLATION (params N)" in text
    # two model sizes cannot be back-tested: the library's one-line refusal is shown
    assert "no back-test: backtest cbs: 2 model sizes" in text


def test_capacity_reports_r_with_its_interval(monkeypatch):
    nb = execute("capacity", DATA / "study_capacity", monkeypatch)
    text, html, images = outputs(nb)
    assert re.search(r"R = 2\.000 bits/param, 95% \[2\.000, 2\.000\]", text)  # the fixture's R
    assert "R[100] = 0.400" in text and "R_int4" in text
    for trial in pl.read_parquet(DATA / "study_capacity" / "runs.parquet")["trial"]:
        assert trial in html  # the per-trial bits table
    assert images == 1
    assert re.search(r"bits at P = 66,000 \(max 56,034\): [\d,]+, 90% prediction interval", text)
    assert re.search(r"\d+% of 4 held-out points inside the 90% prediction intervals", text)
    assert "TOO_FEW_POINTS" in text  # the back-test says 4 points cannot tell 90% from 80%


def test_hparams_recovers_the_fixture_path_and_fits_the_published_runs(monkeypatch):
    nb = execute("hparams", DATA / "study_hparams", monkeypatch)
    text, html, images = outputs(nb)
    assert "left out 1 run(s): 1 diverged" in text and "seq_len 32" in text
    assert all(c in html for c in ("lr status", "B status", "flags"))  # the cells table
    # the fixture's path, lr* = 0.015·N^-0.3·D^0.1 and B* = D^0.5: exponents near the truth
    lr = re.search(r"^lr~ND: [\d.]+·N\^(-[\d.]+)·D\^([\d.]+)", text, re.M)
    b = re.search(r"^batch~ND: [\d.]+·N\^(-?[\d.]+)·D\^([\d.]+)", text, re.M)
    assert abs(float(lr[1]) + 0.3) < 0.03 and abs(float(lr[2]) - 0.1) < 0.03
    assert abs(float(b[2]) - 0.5) < 0.03
    assert "NON_IDENTIFIABLE (lr~C.C)" in text  # η* is not a function of C alone
    for name in ("lr", "B"):
        assert re.search(rf"{name}\* at N = [\d,]+, D = [\d,]+: [\d.e-]+, 90% prediction", text)
    assert "EXTRAPOLATION (params N)" in text and re.search(r"at 2 x lr\*: \+0\.0\d+ nats", text)
    assert "B*/CBS" in html and "cbs~tokens" in html  # beside the fixture's CBS fit
    assert images == 1
    # Step Law's runs: its (N, D) exponents beside the published ones, every diagnostic
    assert re.search(r"Step Law runs, lr~ND exponent of N: -0\.\d+ \[.*published: -0\.713", text)
    assert "published: 0.571" in text
    assert re.search(r"\d+ of 17 cells locate lr\*; \d+ diagnostics:", text)
    assert "NON_IDENTIFIABLE (lr~C.C)" in text.split("Step Law runs")[-1]


@pytest.mark.parametrize("name", ALL)
def test_every_notebook_names_its_fallback_fixture(name):
    source = (NOTEBOOKS / f"{name}.ipynb").read_text()
    (fixture,) = set(re.findall(r"study_(?:quickstart|cbs|capacity|hparams)", source))
    assert (DATA / fixture / "runs.parquet").is_file()
