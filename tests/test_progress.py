"""What a researcher sees: honest states (a dead trial is `interrupted`), counts with rate and
ETA, compact end-of-run summaries with names that fit 80 columns."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

from scalelab import files, progress, status
from scalelab.config import RunConfig, Trial, TrialSpec
from scalelab.summary import lines, short_names
from scalelab.train.recorder import Heartbeat, new_record


def _running(tdir: Path, beat_age_s: float | None) -> None:
    files.write_json(tdir / "trial.json", new_record(Trial(TrialSpec(name=tdir.name))))
    if beat_age_s is not None:
        (tdir / status.HEARTBEAT).touch()
        t = time.time() - beat_age_s
        os.utime(tdir / status.HEARTBEAT, (t, t))


def test_a_running_record_whose_heartbeat_stopped_is_interrupted(tmp_path):
    for name, age in (("alive", 1.0), ("dead", status.LEASE_S + 5), ("never", None)):
        _running(tmp_path / name, age)
    states = {n: status.inspect(tmp_path / n).state for n in ("alive", "dead", "never")}
    assert states == {"alive": "running", "dead": "interrupted", "never": "interrupted"}


def test_heartbeat_thread_keeps_the_lease_until_closed(tmp_path, monkeypatch):
    monkeypatch.setattr("scalelab.train.recorder.HEARTBEAT_S", 0.05)
    beat = Heartbeat(tmp_path)
    path = tmp_path / status.HEARTBEAT
    # the thread touches it every 0.05 s; wait for two touches rather than sleeping a fixed
    # time: a loaded machine may not run the thread at once, and some file systems keep
    # mtimes to the second (the 10 s deadline covers both)
    seen = [path.stat().st_mtime_ns]
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        if (now := path.stat().st_mtime_ns) > seen[-1]:
            seen.append(now)
        time.sleep(0.01)
    assert len(seen) == 3, f"the heartbeat was touched {len(seen) - 1} time(s) in 10 s"
    assert status.alive(tmp_path)
    beat.close()
    assert not beat.thread.is_alive()


def test_a_started_trial_is_running_before_its_record_exists(tmp_path):
    (tmp_path / "t").mkdir()
    assert progress.trial_state(tmp_path / "t")["state"] == "pending"
    (tmp_path / "t" / status.HEARTBEAT).touch()  # train() touches it before building anything
    assert progress.trial_state(tmp_path / "t")["state"] == "running"


def test_rate_line_counts_and_eta():
    states = {f"t{i}": {"state": "completed"} for i in range(10)}
    states |= {"f": {"state": "failed"}, "r": {"state": "running"}}
    states |= {f"p{i}": {"state": "pending"} for i in range(8)}
    line = progress.rate_line(states, t0=0.0, done0=1, now=300.0)  # 10 new in 5 minutes
    assert line.startswith("running 1, done 11/20 (completed 10, failed 1), pending 8")
    assert line.endswith("2.0 trials/min, ETA 4m30s")  # 9 left at 2 per minute


def test_short_names_keep_what_differs_and_the_hash():
    names = [
        "N6K-B128-lr0.02-cosine-s0-namebiod-npeople500-E1000-f6049a",
        "N6K-B128-lr0.02-cosine-s1-namebiod-npeople500-E1000-0b1c2d",
        "N14K-B128-lr0.02-cosine-s0-namebiod-npeople500-E1000-9a8b7c",
    ]
    short = short_names(names)
    assert list(short.values()) == ["N6K-s0-f6049a", "N6K-s1-0b1c2d", "N14K-s0-9a8b7c"]
    assert short_names(["a-b", "c"]) == {"a-b": "a-b", "c": "c"}  # no common layout: as is


def test_summary_lines_fit_80_columns():
    points = [(lr, seed) for lr in (1e-3, 3e-3, 1e-2) for seed in range(100)]
    names = [f"N50K-B16-lr{lr:g}-cosine-s{seed}-h{i}" for i, (lr, seed) in enumerate(points)]
    runs = pl.DataFrame(
        {
            "trial": names,
            "status": ["failed"] + ["completed"] * 299,
            "error": ["RuntimeError: boom\nsecond line"] + [None] * 299,
            "final_eval_loss": [None] + [1.0 + (i % 7) / 10 for i in range(1, 300)],
            "grid.optim.lr": [lr for lr, _ in points],
            "grid.seed": [seed for _, seed in points],
        }
    )
    out = lines(runs)
    assert out[0] == "300 trials: completed 299, failed 1"
    assert out[1] == "  failed lr0.001-s0-h0: RuntimeError: boom"
    assert all(len(x) <= 80 for x in out[:3]), out
    # lr 1e-3: the best completed trial there is seed 7 (loss 1.0; seed 0 failed)
    assert out[2:7] == [
        "best final_eval_loss per grid value:",
        "  optim.lr:",
        "    0.001: 1 (lr0.001-s7-h7)",
        "    0.003: 1 (lr0.003-s5-h105)",
        "    0.01: 1 (lr0.01-s3-h203)",
    ]
    assert not any("seed" in x for x in out)  # 100 values: not listed
    assert out[-1] == "best trial: N50K-B16-lr0.001-cosine-s7-h7 (final_eval_loss 1)"


def test_status_table_uses_short_names(tmp_path):
    trials = [Trial(TrialSpec(name=f"N6K-B8-lr3e-3-constant-s{i}-abc{i}")) for i in range(3)]
    for t in trials:
        files.write_json(
            tmp_path / "trials" / t.name / "trial.json",
            new_record(t) | {"status": "failed", "error": "x", "steps_done": 3},
        )
    from rich.console import Console

    console = Console(width=80, record=True)
    console.print(progress.table(progress.scan(tmp_path), "s", show="all"))
    text = console.export_text()
    assert "s0-abc0" in text and "N6K-B8-lr3e-3-constant" not in text
    assert max(len(x) for x in text.splitlines()) <= 80
    assert RunConfig().eval_every == 20  # the record's placement is the default one


def test_short_trials_are_bundled_in_strides_and_the_rest_alone():
    from scalelab.launch import bundles

    one = [Trial(TrialSpec(name=f"t{i}", seed=i)) for i in range(30)]
    fsdp = [Trial(TrialSpec(name="f"), RunConfig(workers=2))]
    groups = bundles(one + fsdp, slots=2, asha=False)
    assert [len(g) for g in groups] == [4] * 6 + [3] * 2 + [1]  # 4 waves x 2 slots, + FSDP
    assert [t.name for t in groups[0]] == ["t0", "t8", "t16", "t24"]  # a stride: mixed sizes
    assert groups[-1] == fsdp
    assert sorted(t.name for g in groups for t in g) == sorted(t.name for t in one + fsdp)
    assert all(len(g) == 1 for g in bundles(one, slots=2, asha=True))  # ASHA stops them singly


def test_after_hook_runs_once_per_set_of_tables_unless_forced(tmp_path):
    import shutil

    from scalelab.study import run_after
    from scalelaws.study.load import load_study

    root = shutil.copytree(Path(__file__).parent / "data" / "study_quickstart", tmp_path / "s")
    calls = []

    def after(r):
        calls.append(r)

    assert run_after(after, root) and len(calls) == 1
    assert not run_after(after, root) and len(calls) == 1  # same tables: skipped
    assert run_after(after, root, force=True) and len(calls) == 2
    runs = pl.read_parquet(root / "runs.parquet")
    runs.head(runs.height - 1).write_parquet(root / "runs.parquet")  # a table changed
    assert run_after(after, root) and len(calls) == 3
    assert files.read_json(root / "after.json")["tables_sha256"] == load_study(root).sha256()
