"""No silent wrong state (platform side): every bad input gets one line and exit 2, and a
damaged trial folder is named, never trusted, never fatal to the rest of the study.

The CLI runs in-process through its real entry point (`scalelab.cli.main`), so the error path
under test is the one users get; analysis commands' inputs are covered next to each law.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import warnings
from pathlib import Path

import polars as pl
import pytest
from cli_run import cli, one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalelab import files, results, status
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.sweep import SweepSpec, expand
from scalelab.train import train

SPEC = TrialSpec(
    model=ModelSpec("6K"),
    optim=OptimSpec(lr=3e-3),
    schedule=ScheduleSpec("constant", 2),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=10,
    eval_batch_size=16,
)
RUN = RunConfig(eval_every=5, noise_every=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A collected study of three real, completed 10-step trials."""
    root = tmp_path_factory.mktemp("bad") / "study"
    spec = SweepSpec("bad", SPEC, grid={"seed": [0, 1, 2]}, run=RUN)
    from scalelab.launch import write_study_json

    trials = expand(spec)
    write_study_json(root, spec, trials)
    for t in trials:
        train(t, root / "trials" / t.name)
    results.collect(root)
    return root


def _copy(study: Path, tmp_path: Path) -> Path:
    root = tmp_path / "study"
    shutil.copytree(study, root)
    return root


# ---- the CLI answers in one line, exit 2 ----------------------------------------------------

STUDY_FILES = {
    "syntax": ("SPEC = (\n", r"study\.py:1: syntax error"),
    "name_error": ("x = 1\nSPEC = undefined_name\n", r"study\.py:2: NameError"),
    "no_spec": ("X = 1\n", r"SPEC: .* must define SPEC"),
    "bad_seed": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(seed='x'))\n",
        r"seed: must be an int",
    ),
    "eps": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec, OptimSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(optim=OptimSpec(eps=-1.0)))\n",
        r"optim\.eps: must be a positive number",
    ),
    "collision": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(), grid={'tokens': [1e5], 'total_steps': [10]})\n",
        r"grid: 'tokens' and 'total_steps' both set the step count",
    ),
    "seq_len": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(seq_len=100_000))\n",
        r"seq_len: 100,000 tokens is above the limit",
    ),
    "knowledge_on_pcfg": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(knowledge_eval=True))\n",
        r"knowledge_eval: needs a knowledge source",
    ),
    "placement_in_spec": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec.from_dict({'workers': 2}))\n",
        r"workers: unknown field \('workers' is placement",
    ),
    "resource": (
        "from scalelab.sweep import SweepSpec\nfrom scalelab.config import TrialSpec\n"
        "SPEC = SweepSpec('x', TrialSpec(), driver_resources=[1])\n",
        r"driver_resources: must be a dict",
    ),
}


@pytest.mark.parametrize("case", sorted(STUDY_FILES))
def test_bad_study_files_get_one_line_and_exit_2(case, tmp_path, capsys):
    text, pattern = STUDY_FILES[case]
    (tmp_path / "study.py").write_text(text)
    code, _, err = cli(["run", tmp_path / "study.py", "--storage", tmp_path / "out"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert re.search(pattern, line), line
    assert not (tmp_path / "out").exists()  # nothing written before the study is valid


def test_bad_trial_files_get_one_line(tmp_path, capsys):
    cases = {
        "missing.json": (None, "TRIAL: no file"),
        "notjson.json": ("{nope", "trial: not valid JSON"),
        "eps.json": (
            json.dumps({"spec": {"optim": {"eps": -1}}, "run": {}}),
            "optim.eps: must be a positive number",
        ),
        "fsdp.json": (json.dumps({"spec": {}, "run": {"fsdp": "yes"}}), "fsdp: must be true"),
    }
    for name, (text, want) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        code, _, err = cli(["train", tmp_path / name, "--out", tmp_path / "t"], capsys)
        assert code == 2 and want in one_error_line(err), (name, err)


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "t.json").write_text(Trial(SPEC, RunConfig(device="cuda")).to_json())
    code, _, err = cli(["train", tmp_path / "t.json", "--out", tmp_path / "t"], capsys)
    assert code == 2 and "device: 'cuda' asked for but torch sees no GPU" in one_error_line(err)
    rec = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert rec["status"] == "failed" and "device" in rec["error"]  # not left "running"


def test_mistyped_paths_are_refused_and_not_created(tmp_path, capsys):
    for cmd in ("collect", "status"):
        code, _, err = cli([cmd, tmp_path / "no_such_study"], capsys)
        assert code == 2 and "holds no study" in one_error_line(err)
    assert not (tmp_path / "no_such_study").exists()
    code, _, err = cli(["run", "--bogus", "x"], capsys)
    assert code == 2 and "No such option: --bogus" in one_error_line(err)


# ---- trial status never lies ------------------------------------------------------------------


def test_failure_after_training_ends_failed_not_running(tmp_path, monkeypatch):
    """The knowledge measurement raising after the last step (fault injected into the
    measurement, not into the trainer under test): trial.json says failed, with the error."""
    import scalelab.knowledge

    def broken(*args, **kwargs):
        raise KeyError("no facts")

    monkeypatch.setattr(scalelab.knowledge, "measure", broken)
    spec = dataclasses.replace(
        SPEC, seq_len=12, knowledge_eval=True, data=DataSpec("biod", params={"n_people": 16})
    )
    with pytest.raises(KeyError):
        train(Trial(spec, RUN), tmp_path / "t")
    rec = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert rec["status"] == "failed" and "no facts" in rec["error"] and rec["steps_done"] == 10


def test_status_and_collect_name_every_untrustworthy_folder(study, tmp_path, capsys):
    root = _copy(study, tmp_path)
    a, b, c = sorted(p.name for p in (root / "trials").iterdir())
    rec = root / "trials" / a / "trial.json"
    rec.write_text(rec.read_text()[:200])  # truncated
    moved = root / "trials" / b / "trial.json"  # a record that names another trial
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "name": c}))
    code, out, err = cli(["status", root, "--all"], capsys)
    assert code == 0
    assert f"corrupt: {rec}: unreadable" in err
    assert f"mismatch: {moved}: names trial {c!r}" in err
    code, out, err = cli(["collect", root], capsys)
    assert code == 0 and "1 runs" in out and "2 problem(s)" in out
    assert str(rec) in err and str(moved) in err
    assert not status.is_done(root / "trials" / a, "x")


def test_a_hand_edited_spec_is_a_mismatch(study, tmp_path):
    root = _copy(study, tmp_path)
    tdir = next((root / "trials").iterdir())
    rec = json.loads((tdir / "trial.json").read_text())
    rec["spec"]["optim"]["lr"] = 1.0  # the record no longer describes what was measured
    (tdir / "trial.json").write_text(json.dumps(rec))
    info = status.inspect(tdir)
    assert info.state == "mismatch" and "does not hash to its content_hash" in info.problems[0]
    assert not status.is_done(tdir, rec["content_hash"])


def test_result_files_follow_the_umask(study):
    for p in [study / "runs.parquet", *study.glob("trials/*/trial.json")]:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == 0o666 & ~_umask(), (p, oct(mode))


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ---- random damage: collect never aborts, and says what it left out ---------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.floats(0.0, 1.0),
    junk=st.binary(max_size=64),
    which=st.sampled_from(["trial.json", "curve.parquet"]),
)
def test_random_corruption_never_aborts_collect(study, tmp_path_factory, cut, junk, which):
    root = _copy(study, tmp_path_factory.mktemp("fuzz"))
    victim = sorted((root / "trials").iterdir())[1]
    path = victim / which
    data = path.read_bytes()
    k = int(cut * len(data))
    path.write_bytes(data[:k] + junk + data[k + len(junk) :])
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs, curves = results.collect(root, problems=problems, write=False)
    others = {p.name for p in (root / "trials").iterdir()} - {victim.name}
    assert others <= set(runs["trial"].to_list())  # the undamaged trials are all there
    assert set(curves["trial"].unique().to_list()) >= others
    if victim.name not in set(curves["trial"].unique().to_list()):
        assert any(victim.name in p for p in problems), problems  # left out, and named
    assert curves.filter(pl.col("trial") == victim.name).height in (0, 10)  # whole or absent


def test_files_written_are_whole_or_absent(tmp_path):
    """The atomic writer leaves the old file when the write fails half way."""
    path = tmp_path / "x.json"
    files.write_json(path, {"a": 1})

    class Boom:
        def to_dict(self):
            raise RuntimeError("mid-write")

    with pytest.raises(RuntimeError):
        files.write_json(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1} and not list(tmp_path.glob(".*.tmp"))
