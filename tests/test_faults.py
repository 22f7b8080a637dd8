"""Fault injection: after each failure nothing is lost and nothing is counted twice.

- a training worker process SIGKILLed mid-trial (a one-worker trial, and one rank of a 2-worker
  FSDP trial): the trial resumes from its last checkpoint, every step once in its curve;
- a truncated curve.parquet, a trial folder without trial.json, a half-written trial.json:
  `collect` warns naming each one and leaves it out;
- two collects at once while a reader reads: every read sees a whole, correct table.
Elsewhere: a killed worker *node* (tests/test_cluster.py, on its 3-node cluster) and a killed
driver (tests/test_launch.py::test_killing_the_driver_then_rerunning_finishes_without_redoing_work).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import polars as pl
import pytest

from scalelab import results
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand
from scalelab.train import train

BIN = Path(sys.executable).parent

STUDY = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

SPEC = SweepSpec(
    "faults",
    TrialSpec(model=ModelSpec("50K"), optim=OptimSpec(lr=3e-3), schedule=ScheduleSpec("cosine", 5),
              data=DataSpec("pcfg"), batch_size=8, seq_len=32, total_steps={steps}),
    run=RunConfig(eval_every=25, checkpoint_every=25, workers={workers}),
    storage={storage!r},
    max_failures=2,
)
"""


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # children are listed per thread
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _run_and_kill(tmp_path: Path, workers: int, title: str, steps: int) -> tuple[Path, int]:
    """Run a one-trial study; SIGKILL the Ray worker process `title` once a checkpoint exists."""
    root = tmp_path / "faults"
    study = tmp_path / "faults_study.py"
    study.write_text(STUDY.format(steps=steps, workers=workers, storage=str(root)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    cmd = [str(BIN / "scalelab"), "run", str(study), "--no-wandb", "--no-progress"]
    p = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    killed = 0
    try:
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and not killed:
            if list(root.glob("trials/*/ckpt/step_*/meta.json")):  # a checkpoint is complete
                victims = [c for c in _descendants(p.pid) if _title(c).startswith(title)]
                if victims:
                    os.kill(victims[-1], signal.SIGKILL)  # as the OOM killer would
                    killed = victims[-1]
            time.sleep(0.2)
        out, _ = p.communicate(timeout=400)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert killed, f"no {title} process was found to kill:\n{out.decode()[-3000:]}"
    assert p.returncode == 0, out.decode()[-3000:]
    return root, killed


def _assert_resumed_once_each(root: Path, steps: int, world: int) -> dict:
    (tdir,) = (root / "trials").iterdir()
    rec = json.loads((tdir / "trial.json").read_text())
    assert rec["status"] == "completed" and rec["world_size"] == world
    # resumed from a checkpoint taken before the kill, part-way through
    assert 0 < rec["resumed_from"] < steps and rec["resumed_from"] % 25 == 0, rec
    curve = pl.read_parquet(tdir / "curve.parquet")
    assert curve["step"].to_list() == list(range(1, steps + 1))  # every step exactly once
    curves = pl.read_parquet(root / "curves.parquet")
    assert curves["step"].to_list() == list(range(1, steps + 1))
    assert not (tdir / "ckpt").exists()  # cleared once the trial completed
    return rec


def _tune_failures(root: Path) -> int:
    """How often Tune itself restarted the (only) trial."""
    import logging

    from ray.tune import ExperimentAnalysis

    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # no result.json: metrics are ours
    (trial,) = ExperimentAnalysis(str(root / "_ray" / "faults")).trials
    return trial.num_failures


@pytest.mark.slow
def test_sigkill_of_the_trial_process_resumes_from_its_checkpoint(tmp_path):
    steps = 300
    root, pid = _run_and_kill(tmp_path, workers=1, title="ray::ImplicitFunc", steps=steps)
    assert not Path(f"/proc/{pid}").exists()
    _assert_resumed_once_each(root, steps, world=1)
    assert _tune_failures(root) == 1  # Tune retried the trial (SweepSpec.max_failures)


@pytest.mark.slow
def test_sigkill_of_one_fsdp_rank_restarts_the_worker_group_from_the_checkpoint(tmp_path):
    steps = 200
    root, _ = _run_and_kill(tmp_path, workers=2, title="ray::RayTrainWorker", steps=steps)
    _assert_resumed_once_each(root, steps, world=2)
    assert _tune_failures(root) == 0  # Ray Train restarted the worker group inside the trial


# ---- collect: damaged trial folders, concurrent collects ----

BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=3e-3),
    schedule=ScheduleSpec("constant", 2),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=30,
    eval_batch_size=16,
)
RUN = RunConfig(eval_every=10, noise_every=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A study folder with four real, completed trials."""
    root = tmp_path_factory.mktemp("collect") / "study"
    for t in expand(SweepSpec("collect", BASE, grid={"seed": [0, 1, 2, 3]}, run=RUN)):
        train(t, root / "trials" / t.name)
    return root


def test_collect_reports_and_skips_damaged_trial_folders(study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(study, root)
    a, b, c, d = sorted(p.name for p in (root / "trials").iterdir())
    curve = root / "trials" / a / "curve.parquet"  # truncated: a crash mid-copy, a full disk
    curve.write_bytes(curve.read_bytes()[: curve.stat().st_size // 2])
    for f in ("trial.json", "progress.json"):  # a folder with a curve but no trial.json
        (root / "trials" / b / f).unlink()
    rec = root / "trials" / c / "trial.json"  # half a trial.json
    rec.write_text(rec.read_text()[:100])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs, curves = results.collect(root)
    said = "\n".join(str(w.message) for w in caught)
    assert str(curve) in said
    assert f"{root / 'trials' / b}: no trial.json" in said
    assert str(rec) in said
    # a's record is sound, only its curve is lost; b and c have no record; d is whole
    assert sorted(runs["trial"]) == [a, d]
    assert curves["trial"].unique().to_list() == [d]
    assert curves["step"].to_list() == list(range(1, 31))
    assert pl.read_parquet(root / "runs.parquet").equals(runs)
    assert pl.read_parquet(root / "curves.parquet").equals(curves)

    r = subprocess.run(
        [str(BIN / "scalelab"), "collect", str(root)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "2 runs, 30 curve rows" in r.stdout
    for name in (a, b, c):
        assert name in r.stderr


COLLECT_LOOP = """
import sys
from scalelab import results
for _ in range(int(sys.argv[2])):
    results.collect(sys.argv[1])
"""


def test_two_collects_at_once_never_expose_a_partial_table(study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(study, root)
    want_runs, want_curves = results.collect(root, write=False)
    assert len(want_runs) == 4 and len(want_curves) == 4 * 30
    procs = [
        subprocess.Popen([sys.executable, "-c", COLLECT_LOOP, str(root), "40"]) for _ in range(2)
    ]
    reads = 0
    try:
        while any(p.poll() is None for p in procs):  # read while both write
            for name, want in (("runs.parquet", want_runs), ("curves.parquet", want_curves)):
                try:
                    got = pl.read_parquet(root / name)
                except FileNotFoundError:
                    continue  # before the first write
                assert got.equals(want), name
                reads += 1
    finally:
        for p in procs:
            p.wait(timeout=300)
    assert [p.returncode for p in procs] == [0, 0]
    assert reads > 0
    assert pl.read_parquet(root / "runs.parquet").equals(want_runs)
    assert pl.read_parquet(root / "curves.parquet").equals(want_curves)
    assert not list(root.glob(".*.tmp")), "temp files left behind"
