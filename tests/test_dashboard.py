"""W&B at the study level, offline (WANDB_MODE=offline; no login, no network): the trial runs'
config carries the grid keys, the analysis run logs the runs table, every fit (summary and
tables), the plots and the results artifact, and `scalelab dashboard` writes the view's
definition. Everything is read back from what W&B wrote (wandb_offline.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner
from wandb_offline import OfflineRun, offline_runs

import scalelaws as sl
from scalelab.cli import app, main
from scalelab.config import OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand
from scalelab.tracking import analysis_run, dashboard
from scalelab.tracking import runs as tracking
from scalelab.tracking.runs import Tracker

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    for var in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def study(tmp_path) -> Path:
    return shutil.copytree(DATA / "study_quickstart", tmp_path / "study_quickstart")


def test_trial_runs_carry_every_grid_key_at_the_top_level_of_their_config(tmp_path):
    sched = ScheduleSpec("cosine", 5, {"final_lr": 3e-4})
    spec = SweepSpec(
        "grid",
        TrialSpec(optim=OptimSpec(lr=3e-3), total_steps=10),
        run=RunConfig(),
        grid={"model.size": ["50K"], "schedule": [sched], "optim.lr": [1e-3], "seed": [0]},
    )
    (trial,) = expand(spec)
    tracker = Tracker(trial, tmp_path / "t", "offline")
    tracker.finish({"status": "completed", "final_eval_loss": 1.5, "best_eval_loss": 1.4})
    (run,) = [OfflineRun(p) for p in (tmp_path / "t" / "wandb").glob("offline-run-*")]
    assert run.run.run_group == "grid" and run.run.job_type == "trial"
    c = run.config
    # nested, so W&B addresses them as config.model.size (its own nested-config paths)
    assert c["model"] == {"size": "50K"} and c["optim"] == {"lr": 1e-3} and c["seed"] == 0
    assert c["schedule"] == "cosine(final_lr=0.0003)"  # the runs table's grid.schedule label
    assert c["spec"]["schedule"] == {"name": "cosine", "warmup_steps": 5, "params": sched.params}
    assert run.summary["final_eval_loss"] == 1.5 and run.summary["status"] == "completed"


def test_trial_runs_log_at_most_wandb_rows_evenly_plus_every_eval_row_and_the_last(tmp_path):
    # 250 steps, a curve row each, wandb_rows=50: every 5th step, the evals (every 20) and 250
    spec = SweepSpec("cad", TrialSpec(total_steps=250), run=RunConfig(eval_every=20, wandb_rows=50))
    (trial,) = expand(spec)
    assert tracking.wandb_cadence(trial) == 5
    tracker = Tracker(trial, tmp_path / "t", "offline")
    for step in range(1, 251):
        ev = 2.0 if step % 20 == 0 else None
        tracker.log({"step": step, "train_loss": 1.0 / step, "eval_loss": ev})
    tracker.finish({"status": "completed"})
    (run,) = [OfflineRun(p) for p in (tmp_path / "t" / "wandb").glob("offline-run-*")]
    steps = [row["_step"] for row in run.history]
    assert steps == sorted(set(range(5, 251, 5)) | set(range(20, 251, 20)) | {250})
    assert [r["step"] for r in run.history if "eval_loss" in r] == list(range(20, 241, 20))
    # 0: every curve row; a coarser curve (log_every 4) keeps W&B on its rows
    every = RunConfig(wandb_rows=0, log_every=4)
    assert tracking.wandb_cadence(dataclasses.replace(trial, run=every)) == 1
    coarse = dataclasses.replace(trial, run=RunConfig(log_every=4, wandb_rows=50))
    assert tracking.wandb_cadence(coarse) == 8  # 250 / 4 = 62.5 rows -> every 2nd row


@pytest.mark.parametrize(
    "steps, eval_every, log_every, every",
    [
        (300, 10, 1, 10),  # 6 would do; 10 puts the 30 evals among the rows: 30 rows, not 70
        (1000, 7, 1, 21),  # 20 would do; 21 is on every 3rd eval
        (2000, 1000, 1, 40),  # the evals are too far apart to align with: 40
        (300, 5, 3, 6),  # lcm(3, 5) = 15 is over twice 6: 6
    ],
)
def test_wandb_cadence_falls_on_the_eval_steps_when_at_most_twice_as_coarse(
    steps, eval_every, log_every, every
):
    run = RunConfig(eval_every=eval_every, log_every=log_every, wandb_rows=50)
    (trial,) = expand(SweepSpec("cad", TrialSpec(total_steps=steps), run=run))
    assert tracking.wandb_cadence(trial) == every


def test_trial_rows_reach_wandb_in_bursts_every_flush_s_and_at_the_end(tmp_path, monkeypatch):
    (trial,) = expand(SweepSpec("burst", TrialSpec(total_steps=30), run=RunConfig(wandb_rows=0)))
    tracker = Tracker(trial, tmp_path / "t", "offline")
    for step in range(1, 11):
        tracker.log({"step": step, "train_loss": 1.0, "eval_loss": None})
    assert len(tracker.pending) == 10  # nothing handed to W&B yet
    monkeypatch.setattr(tracking, "FLUSH_S", 0.0)
    tracker.log({"step": 11, "train_loss": 1.0, "eval_loss": None})
    assert tracker.pending == []  # the burst went out
    monkeypatch.setattr(tracking, "FLUSH_S", 30.0)
    for step in range(12, 31):
        tracker.log({"step": step, "train_loss": 1.0, "eval_loss": None})
    tracker.finish({"status": "completed"})
    (run,) = [OfflineRun(p) for p in (tmp_path / "t" / "wandb").glob("offline-run-*")]
    assert [row["_step"] for row in run.history] == list(range(1, 31))


def test_analysis_run_logs_runs_table_fits_plots_and_the_results_artifact(study):
    folder = analysis_run.log_analysis(study, reason="study")
    (run,) = offline_runs(study)
    assert run.folder == folder
    assert run.run.run_group == "study_quickstart" and run.run.job_type == "analysis"
    assert run.config["grid_keys"] == ["model.size", "schedule"]
    # the runs table: one row per trial, grid keys, status, final and best losses
    table = run.table("runs")
    expected = sl.runs_table(sl.load_study(study))
    assert table["columns"] == expected.columns
    assert table["columns"][:4] == ["trial", "grid.model.size", "grid.schedule", "status"]
    assert [r[0] for r in table["data"]] == expected["trial"].to_list()
    col = table["columns"].index("final_eval_loss")
    assert [r[col] for r in table["data"]] == pytest.approx(expected["final_eval_loss"].to_list())
    assert run.summary["study/trials"] == 8 and run.summary["study/status/completed"] == 8
    # each fit: parameters, intervals, metrics, diagnostics in the summary, and as tables
    fit = json.loads((study / "mpl_fit.json").read_text())
    for name, value in fit["params"].items():
        assert run.summary[f"fits/mpl_fit/params/{name}"] == pytest.approx(value)
        assert run.summary[f"fits/mpl_fit/interval/{name}"] == pytest.approx(fit["intervals"][name])
    assert run.summary["fits/mpl_fit/metrics/test.r2"] == pytest.approx(
        fit["metrics"]["test"]["r2"]
    )
    assert run.summary["fits/mpl_fit/n_diagnostics"] == 1
    diags = run.table("tables/mpl_fit/diagnostics")
    assert diags["data"][0][1:3] == ["warning", "PARAM_AT_BOUND"]
    params = run.table("tables/mpl_fit/params")
    assert params["columns"] == ["name", "value", "lo", "hi"] and len(params["data"]) == 7
    prop = json.loads((study / "proposed_schedule.json").read_text())
    assert run.summary["fits/proposed_schedule/params/proposed"] == pytest.approx(
        prop["predicted_final_loss"]
    )
    assert run.summary["fits/proposed_schedule/interval/cosine"] == pytest.approx(
        prop["intervals"]["cosine"]
    )
    # plots: curves per grid key, the fit and the proposal (drawn from their JSON), as images
    for key in ("curves_model_size", "curves_schedule", "mpl_fit", "proposed_schedule"):
        image = run.logged(f"plots/{key}")
        assert image["_type"] == "image-file" and image["width"] >= 400, key
        assert run.file(image["path"]).stat().st_size > 10_000
    # the artifact: the tables and the result files, staged with their exact bytes
    (art,) = [a for a in run.artifacts if a.type == "study-results"]
    assert art.name == "study_quickstart-results" and set(art.aliases) == {"latest", "study"}
    assert json.loads(art.metadata)["trials"] == 8
    staged = {e.path: Path(e.local_path) for e in art.manifest.contents}
    assert set(staged) == {
        "runs.parquet",
        "curves.parquet",
        "fits/mpl_fit.json",
        "fits/proposed_schedule.json",
    }
    for name, path in staged.items():
        original = study / Path(name).name
        assert (
            hashlib.sha256(path.read_bytes()).digest()
            == hashlib.sha256(original.read_bytes()).digest()
        )


def test_a_fit_on_a_study_logs_an_analysis_run_with_that_fit(study, tmp_path, capsys):
    out = tmp_path / "FIT.json"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "fit",
                "multipower",
                "--runs",
                str(study),
                "--where",
                "model = '14K' AND schedule IN ('constant', 'cosine', 'wsdcon')",
                "--bootstrap",
                "3",
                f"--out={out}",
            ]
        )
    assert e.value.code == 0
    assert "W&B analysis run:" in capsys.readouterr().err
    (run,) = offline_runs(study)
    assert run.config["reason"] == "fit" and run.run.job_type == "analysis"
    fit = json.loads(out.read_text())
    assert run.summary["fits/FIT/params/L0"] == pytest.approx(fit["params"]["L0"])
    assert run.summary["fits/FIT/interval/A"] == pytest.approx(fit["intervals"]["A"])
    assert "fits/mpl_fit/params/L0" in run.summary  # the study's own fits are there too
    (art,) = [a for a in run.artifacts if a.type == "study-results"]
    assert "fits/FIT.json" in {e.path for e in art.manifest.contents}


WARM_THEN_LOG = """
import os, sys
from pathlib import Path
from scalelab.tracking import analysis_run

def children():  # this process's child processes, by name
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if int(rest.split()[1]) == os.getpid():
            kids.append(name.split("(", 1)[1])
    return kids

env = dict(os.environ)
analysis_run.warm()
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert children() == [], children()
analysis_run.log_analysis(sys.argv[1], reason="study")
# `import wandb` brings OpenTelemetry's API; its SDK and exporters come with the telemetry
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exp"))))
"""


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_warm_up_starts_nothing_and_the_offline_analysis_run_sends_no_telemetry(study, tmp_path):
    """A study's driver warms the analysis run up while Ray starts: no W&B service yet (it
    would set WANDB_SERVICE, which Ray's processes inherit), no other change to the
    environment. Offline, the run then leaves W&B's usage telemetry (OpenTelemetry) off."""
    script = tmp_path / "warm.py"
    script.write_text(WARM_THEN_LOG)
    out = subprocess.run(
        [sys.executable, str(script), str(study)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    (run,) = offline_runs(study)
    assert run.config["reason"] == "study"


def test_no_analysis_run_when_wandb_is_disabled(study, monkeypatch):
    assert analysis_run.log_quietly(study, "disabled", "study") is None
    assert analysis_run.log_quietly(study, None, "study") is None
    assert not (study / "wandb").exists()


def test_dashboard_writes_the_view_definition_offline(study):
    r = CliRunner().invoke(app, ["dashboard", str(study)])
    assert r.exit_code == 0, r.output
    assert f"view definition: {study / 'wandb_view.json'}" in r.output
    assert "no W&B login: to publish" in r.output and "--publish" in r.output
    (run,) = offline_runs(study)  # the study had no analysis run: one was logged
    assert run.config["reason"] == "dashboard"
    view = dashboard.read_view(study / "wandb_view.json")
    assert view["runset"] == {"group": "study_quickstart"} and view["project"] == "scalelab"
    panels = {s["name"]: s["panels"] for s in view["sections"]}
    lines = panels["Loss curves by grid key"]
    assert [(p["y"], p["groupby"]) for p in lines] == [
        (["eval_loss"], "config.model.size"),
        (["eval_loss"], "config.schedule"),
    ]
    finals = panels["Final loss against each grid key"]
    assert [(p["x"], p["y"]) for p in finals] == [
        ("config.model.size", "summary.final_eval_loss"),
        ("config.schedule", "summary.final_eval_loss"),
    ]
    (pc,) = panels["Parallel coordinates"]
    assert pc["columns"] == [
        "config.model.size",
        "config.schedule",
        "summary.final_eval_loss",
        "summary.best_eval_loss",
    ]
    table, media = panels["Fits"]
    assert table["key"] == "runs"
    logged = {k for row in run.history for k in row if k.startswith("plots/")}
    assert {f"{k}/_type" for k in media["keys"]} <= logged  # every panel shows a logged plot
    # the exact view W&B stores (wandb-workspaces): nested config paths, the study's group
    spec = view["wandb_workspace"]
    sections = spec["spec"]["section"]["panelBankConfig"]["sections"]
    kinds = [p["viewType"] for s in sections for p in s["panels"]]
    assert kinds.count("Run History Line Plot") == 2 and kinds.count("Scatter Plot") == 2
    assert "Parallel Coordinates Plot" in kinds and "Media Browser" in kinds
    line = sections[0]["panels"][0]["config"]
    assert line["groupBy"] == "model.value.size" and line["metrics"] == ["eval_loss"]
    pcp = next(p for s in sections for p in s["panels"] if p["viewType"].startswith("Parallel"))
    assert [c["accessor"] for c in pcp["config"]["columns"]] == [
        "config:model.value.size",
        "config:schedule.value",
        "summary:final_eval_loss",
        "summary:best_eval_loss",
    ]
    (flt,) = spec["spec"]["section"]["runSets"][0]["filters"]["filters"]
    assert flt["key"] == {"section": "run", "name": "group"} and flt["value"] == "study_quickstart"
    # a second call reuses the analysis run
    r = CliRunner().invoke(app, ["dashboard", str(study)])
    assert r.exit_code == 0 and len(offline_runs(study)) == 1


def test_dashboard_refuses_a_folder_without_a_study(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["dashboard", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: STUDY:")


def test_view_of_old_tables_uses_the_varying_runs_columns(tmp_path):
    from analysis_data import mpl_study

    root = mpl_study(tmp_path / "old", grid=False, total=200)
    view = dashboard.build_view(root)
    (pc,) = next(s for s in view["sections"] if s["name"] == "Parallel coordinates")["panels"]
    assert pc["columns"][:2] == ["config.spec.schedule.name", "config.spec.seed"]
    assert pl.read_parquet(root / "runs.parquet").height == 9


STUDY_FILE = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

SPEC = SweepSpec(
    "wbstudy",
    TrialSpec(model=ModelSpec("6K"), optim=OptimSpec(lr=3e-3), data=DataSpec("pcfg"),
              batch_size=8, seq_len=32, total_steps=40, eval_batch_size=16),
    run=RunConfig(eval_every=2, noise_every=0),
    grid={{"schedule": [ScheduleSpec("constant", 2), ScheduleSpec("cosine", 2)]}},
    storage={storage!r},
)


def after(root):
    import scalelaws as sl

    study = sl.load_study(root)
    sl.fit_multipower(study.curves, study=study, n_boot=2).to_json(root / "mpl_fit.json")
"""


@pytest.mark.integration
def test_a_study_run_with_wandb_logs_its_trials_and_two_analysis_runs(tmp_path):
    """On a local Ray: every trial's run has the grid key in its config; the study's analysis
    run comes at the end of launch.run, and another after the study's after() hook."""
    from scalelab import study as studies

    path = tmp_path / "wbstudy.py"
    path.write_text(STUDY_FILE.format(storage=str(tmp_path / "wbstudy")))
    root = studies.run_module(studies.load(path), wandb_mode="offline", show_progress=False)
    trial_runs = [OfflineRun(p) for p in root.glob("trials/*/wandb/offline-run-*")]
    assert sorted(r.config["schedule"] for r in trial_runs) == ["constant", "cosine"]
    assert {r.run.run_group for r in trial_runs} == {"wbstudy"}
    runs = offline_runs(root)
    assert [r.config["reason"] for r in runs] == ["study", "after"]
    first, second = runs
    assert len(first.table("runs")["data"]) == 2
    assert not any(k.startswith("fits/") for k in first.summary)  # nothing fitted yet
    assert "fits/mpl_fit/params/L0" in second.summary
