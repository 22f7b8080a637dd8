"""Shared prefixes trained once, on a real local Ray: every forked trial's curve is bit for bit
the curve of the same trial trained alone (one-process trials in bundles, and FSDP on 2 gloo
ranks), a trunk that diverges or fails before the fork ends its branches saying so, fork
checkpoints are removed when every branch is done (or kept on request), a damaged one is
detected and its prefix trained again, and a placement-only change reruns nothing.

Bit-identity is demanded between two runs on the same machine (the test runs both)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scalelab import checkpoint, files, launch, prefix, summary
from scalelab.cli import app
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.launch import driver, forks
from scalelab.sweep import SweepSpec, expand
from scalelaws.study.report import write_report

pytestmark = pytest.mark.integration

PEAK = 3e-3
BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=PEAK),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=60,
    eval_batch_size=16,
)
# rows every 3 updates and the noise probe every 4: forks land between rows and probes
RUN = RunConfig(eval_every=10, log_every=3, noise_every=4, device="cpu")
NUMBERS = ["step", "tokens", "lr", "train_loss", "eval_loss", "grad_norm", "noise_scale"]


def _wsd(frac: float, shape: str = "linear") -> ScheduleSpec:
    return ScheduleSpec("wsd", 5, {"decay_frac": frac, "shape": shape, "final_lr": PEAK / 10})


# every kind of pair that shares a prefix: a constant run, its step drop, WSD cooldowns of
# several fractions and both shapes, and WSD to a shorter horizon
POINTS = [
    {"schedule": ScheduleSpec("constant", 5)},
    {"schedule": ScheduleSpec("wsdcon", 5, {"drop_step": 40, "value": PEAK / 10})},
    {"schedule": _wsd(0.2)},
    {"schedule": _wsd(0.4, "1-sqrt")},
    {"schedule": _wsd(0.3, "cosine")},
    {"schedule": _wsd(0.2), "total_steps": 30},
]


def _spec(root: Path, name: str, share: bool = True, points=POINTS, run=RUN, **kw) -> SweepSpec:
    run = dataclasses.replace(run, share_prefixes=share)
    return SweepSpec(name, BASE, points=points, run=run, storage=str(root / name), **kw)


def _curves(root: Path) -> dict[str, pl.DataFrame]:
    return {
        d.name: pl.read_parquet(d / "curve.parquet").select(NUMBERS)
        for d in sorted((root / "trials").iterdir())
    }


def _record(root: Path, name: str) -> dict:
    return json.loads((root / "trials" / name / "trial.json").read_text())


@pytest.fixture(scope="module")
def alone(local_ray, tmp_path_factory):
    """The study with sharing off: every trial trained from step 0."""
    root = launch.run(_spec(tmp_path_factory.mktemp("alone"), "alone", share=False),
                      wandb_mode=None, show_progress=False)  # fmt: skip
    assert not any((root / "trials").glob("*/forks")) and "forked_from" not in str(
        [_record(root, d.name) for d in (root / "trials").iterdir()]
    )
    return root


def test_forked_curves_are_bit_identical_to_trials_trained_alone(alone, tmp_path, capsys):
    spec = _spec(tmp_path, "shared")
    trials = expand(spec)
    plan = prefix.plan(trials)
    assert len(plan.forks) == 5 and max(plan.depth.values()) == 1
    # one slot: 5 branches in 4 bundles, so one bundle trains two branches back to back
    root = launch.run(spec, wandb_mode="offline", show_progress=True, max_concurrent=1)
    out = capsys.readouterr().out
    trained, full = plan.trained_steps(), plan.scratch_steps()
    assert f"shared prefixes: trains {trained:,} of {full:,} trial steps" in out
    mine, ref = _curves(root), _curves(alone)
    assert mine.keys() == ref.keys() and len(mine) == 6
    for name in mine:
        assert mine[name].equals(ref[name]), name  # every number of every row, bit for bit
    for t in trials:
        rec = _record(root, t.name)
        assert rec["status"] == "completed" and rec["steps_done"] == t.spec.total_steps
        f = plan.forks.get(t.name)
        if f is None:
            assert "forked_from" not in rec
            continue
        parent = next(p for p in trials if p.name == f.parent)
        assert rec["forked_from"] == {"trial": f.parent, "content_hash":
                                      parent.content_hash(), "step": f.step}  # fmt: skip
        assert rec["content_hash"] == t.content_hash()  # provenance, never identity
        # W&B got the whole curve: the prefix replayed, then the branch's own rows
        (run_dir,) = (root / "trials" / t.name / "wandb").glob("offline-run-*")
        assert run_dir.is_dir()
    # fork checkpoints are gone once every branch finished; the plan is on disk
    assert not list((root / "trials").glob("*/forks"))
    saved = json.loads((root / "prefix.json").read_text())
    assert saved["trained_steps"] == trained and saved["scratch_steps"] == full
    # one Tuner ran trunk and branches, one bundle holding two branches
    assert [p.name for p in (root / "_ray").iterdir() if p.is_dir()] == ["shared"]
    assert any("+" in p.name for p in (root / "_ray" / "shared").iterdir())
    runs = pl.read_parquet(root / "runs.parquet").sort("trial")
    ref_runs = pl.read_parquet(alone / "runs.parquet").sort("trial")
    assert runs["final_eval_loss"].to_list() == ref_runs["final_eval_loss"].to_list()
    # say what it saved: runs.parquet, the end-of-run summary, `status` and the report
    forked = runs.filter(pl.col("fork_step").is_not_null())
    assert dict(zip(forked["trial"], forked["fork_step"], strict=True)) == {
        n: f.step for n, f in plan.forks.items()
    }
    line = f"shared prefixes: trained {trained:,} of {full:,} trial steps"
    assert any(line in s for s in summary.lines(runs))  # the end-of-run summary
    res = CliRunner().invoke(app, ["status", str(root)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and f"the study trains {trained:,} of {full:,}" in res.output
    html = write_report(root).read_text()
    assert "Shared prefixes" in html and f"trained {trained:,} of {full:,}" in html
    assert all(n in html for n in plan.forks)
    # the last branch of a fork to finish removes its checkpoint (trial._drop_fork)
    from scalelab.launch.trial import _drop_fork

    by_name = {t.name: t for t in trials}
    name, f = next(iter(plan.forks.items()))
    ckpt = checkpoint.fork_path(root / "trials" / f.parent, f.step)
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text("{}")
    cfg = forks.fork_config(root, by_name[name], plan, by_name)
    assert cfg["fork_from"]["path"] == str(ckpt)
    pending = {"dir": str(tmp_path / "not_done"), "content_hash": "h"}
    _drop_fork({**cfg, "fork_siblings": [*cfg["fork_siblings"], pending]})
    assert ckpt.is_dir()  # a branch of that fork is not done: kept
    _drop_fork(cfg)
    assert not ckpt.exists() and not ckpt.parent.exists()


def test_a_branch_starts_from_the_fork_checkpoint_while_its_trunk_trains_on(local_ray, tmp_path):
    """Two slots, a trunk of 400 updates and a step drop forking at update 80: the branch
    starts as soon as the fork checkpoint exists, in the same Tuner, before the trunk ends."""
    points = [{"schedule": ScheduleSpec("constant", 5)},
              {"schedule": ScheduleSpec("wsdcon", 5, {"drop_step": 80, "value": PEAK / 10})}]  # fmt: skip
    base = dataclasses.replace(BASE, total_steps=400)
    spec = dataclasses.replace(_spec(tmp_path, "early", points=points), base=base)
    ((name, f),) = prefix.plan(expand(spec)).forks.items()
    assert f.step == 80
    root = launch.run(spec, wandb_mode=None, show_progress=False, max_concurrent=2)
    trunk, branch = _record(root, f.parent), _record(root, name)
    assert trunk["status"] == branch["status"] == "completed"
    assert branch["forked_from"]["step"] == 80 and branch["launch_id"] == trunk["launch_id"]
    branch_start = branch["finished_at"] - branch["wall_s"]
    assert branch_start < trunk["finished_at"], "the branch waited for the whole trunk"
    assert [p.name for p in (root / "_ray").iterdir() if p.is_dir()] == ["early"]


def test_placement_only_change_reruns_nothing(alone, monkeypatch):
    """share_prefixes is placement: the study run without sharing is done under it too."""

    def no_tune(*args, **kwargs):
        raise AssertionError("nothing to run, yet Tune started")

    monkeypatch.setattr(driver, "_tune", no_tune)
    spec = _spec(alone.parent, "alone", share=True)
    assert launch.run(spec, wandb_mode=None, show_progress=False) == alone


def test_kept_forks_survive_and_a_damaged_one_is_trained_again(alone, tmp_path):
    spec = _spec(tmp_path, "kept", keep_forks=True)
    root = launch.run(spec, wandb_mode=None, show_progress=False)
    plan = prefix.plan(expand(spec))
    (trunk,) = plan.fork_steps
    kept = sorted(p.name for p in (root / "trials" / trunk / "forks").iterdir())
    assert kept == [f"step_{s:07d}" for s in plan.fork_steps[trunk]]
    # a branch to train again, from a fork checkpoint damaged on disk
    f = next(f for f in plan.forks.values() if f.parent == trunk)
    shutil.rmtree(root / "trials" / f.name)
    path = checkpoint.fork_path(root / "trials" / trunk, f.step)
    victim = next(p for p in sorted(path.iterdir()) if p.suffix == ".distcp")
    victim.write_bytes(victim.read_bytes()[:-8] + b"damaged!")
    launch.run(spec, wandb_mode=None, show_progress=False)
    rec = _record(root, f.name)
    assert rec["status"] == "completed" and "forked_from" not in rec
    assert "content differs from the manifest" in rec["fork_checkpoint_bad"]
    assert _curves(root)[f.name].equals(_curves(alone)[f.name])
    # the trunk was not trained again
    assert _record(root, trunk)["finished_at"] < rec["finished_at"]


def test_a_trunk_that_diverges_before_the_fork_ends_its_branches_as_diverged(local_ray, tmp_path):
    """Every trial shares the updates up to the divergence, so each branch diverged there too;
    its trial.json and curve say so without training it."""
    points = [{"schedule": ScheduleSpec("constant", 5)}, {"schedule": _wsd(0.2)}]
    spec = _spec(tmp_path, "div", points=points)
    spec = dataclasses.replace(spec, base=dataclasses.replace(BASE, diverge_loss=1.5))
    root = launch.run(spec, wandb_mode=None, show_progress=False)
    plan = prefix.plan(expand(spec))
    ((name, f),) = plan.forks.items()
    trunk, branch = _record(root, f.parent), _record(root, name)
    assert trunk["status"] == "diverged" and trunk["diverged_step"] <= f.step
    assert branch["status"] == "diverged" and branch["diverged_step"] == trunk["diverged_step"]
    assert f"in the prefix it shares with {f.parent}" in branch["error"]
    assert branch["forked_from"]["step"] == f.step
    curves = _curves(root)
    assert curves[name].equals(curves[f.parent])
    runs = pl.read_parquet(root / "runs.parquet")
    assert sorted(runs["status"].to_list()) == ["diverged", "diverged"]


def test_a_trunk_that_failed_before_the_fork_fails_its_branches_with_the_reason(tmp_path):
    """forks.end_orphans on a trunk whose trial.json says failed and that left no checkpoint
    at the fork step: the branch is failed (never running, never skipped) and names both."""
    spec = _spec(tmp_path, "failed", points=POINTS[:2])
    trials = expand(spec)
    plan = prefix.plan(trials)
    ((name, f),) = plan.forks.items()
    root = Path(spec.storage)
    files.write_json(root / "trials" / f.parent / "trial.json",
                     {"name": f.parent, "status": "failed", "error": "RuntimeError: boom",
                      "content_hash": "x"})  # fmt: skip
    by_name = {t.name: t for t in trials}
    left = forks.end_orphans(root, [by_name[name]], plan, by_name)
    assert left == []
    rec = _record(root, name)
    assert rec["status"] == "failed" and rec["steps_done"] == 0
    assert (
        f"trunk {f.parent} failed before the fork at step {f.step}: RuntimeError: boom"
        in (rec["error"])
    )
    # a trunk that completed but whose checkpoint is gone: the branch trains its prefix itself
    files.write_json(root / "trials" / f.parent / "trial.json",
                     {"name": f.parent, "status": "completed"})  # fmt: skip
    assert forks.end_orphans(root, [by_name[name]], plan, by_name) == [by_name[name]]
    assert forks.fork_config(root, by_name[name], plan, by_name)["fork_from"] is None


def test_fsdp_branches_on_two_gloo_ranks_are_bit_identical(local_ray, tmp_path):
    """Two-rank FSDP trials through TorchTrainer: the trunk saves a DCP fork checkpoint, the
    branch loads it on both ranks; the same branch trained alone (the trunk trains from step
    0 either way) records the same curve."""
    run = dataclasses.replace(RUN, workers=2)
    base = dataclasses.replace(BASE, total_steps=20)
    branch = {"schedule": _wsd(0.3)}
    shared = _spec(tmp_path, "fsdp_shared", points=[{"schedule": ScheduleSpec("constant", 5)},
                                                     branch], run=run)  # fmt: skip
    alone = _spec(tmp_path, "fsdp_alone", share=False, points=[branch], run=run)
    roots = {}
    for spec in (shared, alone):
        roots[spec.name] = launch.run(dataclasses.replace(spec, base=base), wandb_mode=None,
                                      show_progress=False)  # fmt: skip
    recs = {d.name: _record(roots["fsdp_shared"], d.name)
            for d in (roots["fsdp_shared"] / "trials").iterdir()}  # fmt: skip
    assert all(r["status"] == "completed" and r["world_size"] == 2 for r in recs.values())
    ((name, f),) = prefix.plan(expand(dataclasses.replace(shared, base=base))).forks.items()
    assert recs[name]["forked_from"]["step"] == f.step > 0
    assert _curves(roots["fsdp_shared"])[name].equals(_curves(roots["fsdp_alone"])[name])


KILL_STUDY = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

WSD = {{"shape": "linear", "final_lr": 3e-4}}
SPEC = SweepSpec(
    "killfork",
    TrialSpec(model=ModelSpec("150K"), optim=OptimSpec(lr=3e-3), data=DataSpec("pcfg"),
              batch_size=16, seq_len=64, total_steps=600, eval_batch_size=16),
    points=[{{"schedule": ScheduleSpec("constant", 5)}},
            {{"schedule": ScheduleSpec("wsd", 5, {{**WSD, "decay_frac": 0.5}})}},
            {{"schedule": ScheduleSpec("wsd", 5, {{**WSD, "decay_frac": 0.2}})}}],
    run=RunConfig(eval_every=50, checkpoint_every=20, log_every=5, device="cpu",
                  share_prefixes={share}),
    storage={storage!r},
)
"""


def _study_cmd(tmp_path: Path, share: bool) -> tuple[list[str], Path, Path]:
    import sys

    root, study = tmp_path / f"kill_{share}", tmp_path / f"kill_{share}.py"
    study.write_text(KILL_STUDY.format(share=share, storage=str(root)))
    cmd = [str(Path(sys.executable).parent / "scalelab"), "run", str(study), "--no-wandb",
           "--no-progress", "--max-concurrent", "1"]  # fmt: skip
    return cmd, root, study


def _kill_when(cmd: list[str], env: dict, ready, what: str) -> None:
    """Start the study's driver, SIGKILL it once `ready()` holds, wait until its Ray is gone."""
    import os
    import signal
    import subprocess
    import time

    from ray._common.utils import get_default_ray_temp_dir

    from scalelab import reaper

    p = subprocess.Popen(cmd, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not ready() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert p.poll() is None and ready(), f"the study never got to: {what}"
    (session,) = Path(get_default_ray_temp_dir()).glob(f"session_*_{p.pid}")
    pids = reaper.session_pids(str(session))
    os.kill(p.pid, signal.SIGKILL)  # the driver alone, as `kill -9 <pid>` would
    p.wait()
    deadline = time.time() + 30
    while session.exists() and time.time() < deadline:  # the reaper cleans up after it
        time.sleep(0.2)
    for pid in pids:  # whatever is left: gone before the rerun
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _status_of(tdir: Path) -> str | None:
    try:
        return json.loads((tdir / "trial.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_killing_the_driver_in_the_trunk_then_in_the_branches_loses_nothing(tmp_path):
    """Kill during the trunk, rerun; kill during the branches, rerun: every trial completes,
    the finished trunk is not trained again, each branch keeps its provenance and its curve
    starts with the trunk's rows. (Bit-identity with training alone is the first test's.)"""
    import os
    import subprocess

    from scalelab import study as studies

    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    cmd, root, study = _study_cmd(tmp_path, True)
    plan = prefix.plan(expand(studies.load(study).SPEC))
    (trunk,) = plan.fork_steps
    tdir, branches = root / "trials" / trunk, [root / "trials" / n for n in plan.forks]
    _kill_when(cmd, env, lambda: any(tdir.glob("ckpt/step_*")) and not (tdir / "forks").is_dir(),
               "a trunk checkpoint before the first fork")  # fmt: skip
    _kill_when(cmd, env, lambda: _status_of(tdir) == "completed"
               and any(any(d.glob("ckpt/step_*")) for d in branches), "a branch part-way")  # fmt: skip
    stamp = _record(root, trunk)["finished_at"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = {d.name: _record(root, d.name) for d in (root / "trials").iterdir()}
    assert all(rec["status"] == "completed" for rec in recs.values())
    assert recs[trunk]["finished_at"] == stamp and recs[trunk].get("resumed_from")
    assert {n: recs[n]["forked_from"]["step"] for n in plan.forks} == {
        n: f.step for n, f in plan.forks.items()
    }
    assert any("resumed_from" in recs[n] for n in plan.forks), "a branch resumed its own ckpt"
    assert not list((root / "trials").glob("*/forks"))
    curves = _curves(root)
    for name, curve in curves.items():
        assert curve["step"].to_list() == list(range(5, 601, 5)), name  # every row once
        f = plan.forks.get(name)
        if f is not None:  # the prefix rows are the trunk's, number for number
            mine = curve.filter(pl.col("step") <= f.step)
            assert mine.equals(curves[trunk].filter(pl.col("step") <= f.step)), name
