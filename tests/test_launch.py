"""Studies on a real local Ray: many one-worker trials, a 2-worker FSDP trial through
TorchTrainer, divergence, idempotent reruns, and a killed driver."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from scalelab import launch, reaper, results
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.launch import driver
from scalelab.sweep import SweepSpec

BIN = Path(sys.executable).parent
BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=3e-3, grad_clip=0.0),
    schedule=ScheduleSpec("constant", 2),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=40,
    eval_batch_size=16,
)
RUN = RunConfig(eval_every=10)


def _no_tune(*args, **kwargs):
    raise AssertionError("a study with nothing left to run started Ray Tune")


def test_six_trials_with_a_diverging_one_then_rerun_skips_all(local_ray, tmp_path, monkeypatch):
    spec = SweepSpec(
        "six",
        BASE,
        grid={"optim.lr": [1e-3, 3e-3, 80.0], "seed": [0, 1]},
        run=RUN,
        storage=str(tmp_path / "six"),
    )
    root = launch.run(spec, wandb_mode=None, show_progress=False)
    runs = pl.read_parquet(root / "runs.parquet")
    curves = pl.read_parquet(root / "curves.parquet")
    assert len(runs) == 6
    status = dict(zip(runs["trial"], runs["status"], strict=True))
    diverged = [t for t, s in status.items() if s == "diverged"]
    assert len(diverged) == 2 and all("lr80" in t for t in diverged), status
    assert sum(s == "completed" for s in status.values()) == 4
    done = runs.filter(pl.col("status") == "completed")
    assert (done["steps_done"] == 40).all() and (done["final_eval_loss"] < 1.1).all()
    assert curves.group_by("trial", "step").len()["len"].max() == 1
    assert curves.filter(pl.col("trial").is_in(done["trial"].to_list())).height == 4 * 40
    before = {
        t: json.loads((root / "trials" / t / "trial.json").read_text())["finished_at"]
        for t in status
    }

    monkeypatch.setattr(driver, "_tune", _no_tune)  # everything is done: nothing runs
    launch.run(spec, wandb_mode=None, show_progress=False)
    after = {
        t: json.loads((root / "trials" / t / "trial.json").read_text())["finished_at"]
        for t in status
    }
    assert after == before
    assert pl.read_parquet(root / "curves.parquet").equals(curves)
    assert pl.read_parquet(root / "runs.parquet").equals(runs)

    # the same study placed elsewhere (2 FSDP workers, other cadences): still nothing to run
    moved = dataclasses.replace(spec, run=RunConfig(workers=2, eval_every=5, log_every=4))
    launch.run(moved, wandb_mode=None, show_progress=False)
    assert {
        t: json.loads((root / "trials" / t / "trial.json").read_text())["finished_at"]
        for t in status
    } == before
    assert sorted(p.name for p in (root / "trials").iterdir()) == sorted(status)
    # every grid key is a column of the runs table
    assert {"grid.optim.lr", "grid.seed"} <= set(runs.columns)
    assert sorted(runs["grid.optim.lr"].unique().to_list()) == [1e-3, 3e-3, 80.0]


def test_two_worker_fsdp_trial_runs_through_torchtrainer_with_wandb_on_rank0(local_ray, tmp_path):
    spec = SweepSpec(
        "fsdp",
        BASE,
        points=[{"workers": 2, "total_steps": 12, "eval_every": 6}],
        run=RUN,
        storage=str(tmp_path / "fsdp"),
    )
    root = launch.run(spec, wandb_mode="offline", show_progress=False)
    runs = pl.read_parquet(root / "runs.parquet")
    assert runs["status"].to_list() == ["completed"]
    (tdir,) = (root / "trials").iterdir()
    rec = json.loads((tdir / "trial.json").read_text())
    assert rec["world_size"] == 2 and rec["steps_done"] == 12
    # W&B: exactly one offline run, opened by world rank 0 only
    wandb_runs = list((tdir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1, wandb_runs


STUDY = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

SPEC = SweepSpec(
    "killme",
    TrialSpec(model=ModelSpec("50K"), optim=OptimSpec(lr=3e-3), schedule=ScheduleSpec("cosine", 5),
              data=DataSpec("pcfg"), batch_size=8, seq_len=32, total_steps={steps}),
    grid={{"seed": [0, 1, 2, 3]}},
    run=RunConfig(eval_every=20, checkpoint_every=20, cpus_per_worker=1),
    storage={storage!r},
)
"""


def _alive(pids: list[int]) -> list[int]:
    """Those still running (a zombie waiting for its reaper counts as gone)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.append(pid)
    return out


def _status(tdir: Path) -> str | None:
    try:
        return json.loads((tdir / "trial.json").read_text())["status"]
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_killing_the_driver_then_rerunning_finishes_without_redoing_work(tmp_path):
    root = tmp_path / "killme"
    study = tmp_path / "killme.py"
    study.write_text(STUDY.format(steps=400, storage=str(root)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    cmd = [
        str(BIN / "scalelab"),
        "run",
        str(study),
        "--no-wandb",
        "--no-progress",
        "--max-concurrent",
        "1",
    ]
    p = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline:  # wait for one finished trial and one part-way through
        finished = [d.name for d in (root / "trials").glob("*") if _status(d) == "completed"]
        running = list((root / "trials").glob("*/ckpt/step_*"))
        if finished and running:
            break
        time.sleep(0.5)
    # Ray's temp root, as Ray finds it ($RAY_TMPDIR, $TMPDIR, else /tmp): not always
    # tempfile.gettempdir()
    from ray._common.utils import get_default_ray_temp_dir

    (session,) = Path(get_default_ray_temp_dir()).glob(f"session_*_{p.pid}")
    ray_pids = reaper.session_pids(str(session))
    os.kill(p.pid, signal.SIGKILL)  # the driver alone, as `kill -9 <pid>` would
    p.wait()
    # its embedded Ray (raylet, GCS, agents, the trial runners) goes with it, in seconds; the
    # reaper deletes the session folder after its processes are gone: wait for both
    deadline = time.time() + 20
    while ((left := _alive(ray_pids)) or session.exists()) and time.time() < deadline:
        time.sleep(0.5)
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert len(ray_pids) >= 4, "the embedded Ray should have been running"
    assert not left, f"Ray processes outlived the killed driver: {left}"
    assert not session.exists()
    assert finished and running, "the study never got part-way"
    stamps = {
        t: json.loads((root / "trials" / t / "trial.json").read_text())["finished_at"]
        for t in finished
    }

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = pl.read_parquet(root / "runs.parquet")
    curves = pl.read_parquet(root / "curves.parquet")
    assert sorted(runs["status"].to_list()) == ["completed"] * 4
    for t, stamp in stamps.items():  # finished trials were not run again
        assert json.loads((root / "trials" / t / "trial.json").read_text())["finished_at"] == stamp
    assert curves.height == 4 * 400
    assert curves.group_by("trial", "step").len()["len"].max() == 1
    resumed = [
        json.loads(p.read_text()).get("resumed_from")
        for p in (root / "trials").glob("*/trial.json")
    ]
    assert any(r for r in resumed), "the interrupted trial should resume from its checkpoint"


def test_asha_stops_bad_trials_early_and_records_them_as_stopped(local_ray, tmp_path, monkeypatch):
    # one at a time, hopeless LR last: asynchronous halving compares it with the earlier ones
    spec = SweepSpec(
        "asha",
        dataclasses.replace(BASE, total_steps=400),
        grid={"optim.lr": [3e-3, 1e-2, 1e-5]},
        storage=str(tmp_path / "asha"),
        asha={"metric": "eval_loss", "grace_period": 10, "reduction_factor": 3},
    )
    root = launch.run(spec, wandb_mode=None, show_progress=False, max_concurrent=1)
    runs = pl.read_parquet(root / "runs.parquet")
    status = dict(zip(runs["trial"], runs["status"], strict=True))
    assert sorted(status.values()).count("completed") >= 1
    stopped = [t for t, s in status.items() if s == "stopped"]
    assert any("lr1e-5" in t for t in stopped), status  # the hopeless LR is cut at the rung
    steps = dict(zip(runs["trial"], runs["steps_done"], strict=True))
    assert all(steps[t] < 400 for t in stopped)
    curves = pl.read_parquet(root / "curves.parquet")
    for t in stopped:  # the partial curve is kept
        assert curves.filter(pl.col("trial") == t)["step"].max() == steps[t]
    monkeypatch.setattr(driver, "_tune", _no_tune)
    launch.run(spec, wandb_mode=None, show_progress=False)  # stopped counts as done


def test_one_corrupted_trial_among_many_collects_reports_and_reruns_to_completion(
    local_ray, tmp_path
):
    from scalelaws import write_report

    spec = SweepSpec(
        "corrupt", BASE, grid={"seed": [0, 1, 2, 3]}, run=RUN, storage=str(tmp_path / "c")
    )
    root = launch.run(spec, wandb_mode=None, show_progress=False)
    victim = sorted((root / "trials").iterdir())[2]
    rec = victim / "trial.json"
    rec.write_text(rec.read_text()[:150])  # a copy cut short
    with pytest.warns(UserWarning, match=str(rec)):
        runs, _ = results.collect(root)
    assert runs.height == 3 and victim.name not in runs["trial"].to_list()
    assert (write_report(root)).exists()  # the report is written from what is readable
    launch.run(spec, wandb_mode=None, show_progress=False)  # retrains the damaged trial only
    runs = pl.read_parquet(root / "runs.parquet")
    assert runs.height == 4 and set(runs["status"]) == {"completed"}
    assert json.loads(rec.read_text())["status"] == "completed"
