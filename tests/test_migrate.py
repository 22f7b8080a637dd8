"""Old results folders: recognised, refused with the fix, migrated in place without recomputing.

tests/data/legacy_v0 was written by scalelab before the identity/placement split (README there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelab import launch, results, status
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    SpecError,
    TrialSpec,
)
from scalelab.migrate import migrate
from scalelab.sweep import SweepSpec, expand
from scalelab.train import train

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_v0"

# legacy_v0 was trained on another machine, and float32 kernels (matmul blocking, SIMD width,
# torch.randn's AVX2 path at init) differ by an ulp between CPUs: its curves are matched to
# these relative tolerances, while two runs on this machine must still agree bit for bit.
# float32 eps = 2**-23 = 1.19e-7. Over the fixture's 30 AdamW steps an ulp-level difference
# grows like the updates it perturbs: a loss (a mean over 8 x 32 tokens) moves by about one
# half-ulp (6e-8) per step at most, 30 x 6e-8 = 1.8e-6 -> LOSS_RTOL = 2e-6 (17 eps). The
# gradient norm is about 10x more sensitive (it falls 4x from step 5 to 30, the loss 1.4x: a
# difference of large, cancelling terms): 10 x 1.8e-6 plus room -> GRAD_NORM_RTOL = 3e-5
# (250 eps). Measured: between this machine's torch kernels (ATEN_CPU_CAPABILITY=avx2, default,
# avx512) at most 3.6e-7 on the losses and 3.4e-6 on grad_norm; on an AVX-512 machine elsewhere
# 2.4e-7 and 4.6e-6 (absolute; at the smallest grad_norm, 0.37, 1.3e-5 relative). A real
# change of the trainer is far above both: the peak LR 0.1% higher moves the losses by 2e-4
# and grad_norm by 1e-3 (relative), a 1% different weight decay the losses by 7e-6.
LOSS_RTOL = 2e-6
GRAD_NORM_RTOL = 3e-5
# the LR is computed in float64 by scalelaws.schedules (numpy's cos): float64 rounding only
LR_RTOL = 1e-12

# legacy_study.py.txt in today's terms: placement moved to the RunConfig
SPEC = SweepSpec(
    name="legacy",
    base=TrialSpec(
        model=ModelSpec("6K"),
        optim=OptimSpec(lr=3e-3),
        data=DataSpec("pcfg"),
        batch_size=8,
        seq_len=32,
        total_steps=30,
        eval_batch_size=16,
    ),
    run=RunConfig(eval_every=10, noise_every=0, log_every=5),
    grid={
        "schedule": [ScheduleSpec("constant", 5), ScheduleSpec("cosine", 5, {"final_lr": 3e-4})],
        "tokens": [7680],
    },
)


@pytest.fixture
def legacy(tmp_path) -> Path:
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root)
    return root


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_refuses_an_old_folder_naming_the_fix(legacy):
    with pytest.raises(SpecError, match=r"^storage: .* old layout .*scalelab migrate"):
        launch.run(SPEC, storage=str(legacy), wandb_mode=None, show_progress=False)


def test_migrate_renames_and_rewrites_without_recomputing(legacy):
    old = {p.name: _digest(p / "curve.parquet") for p in (legacy / "trials").iterdir()}
    done = migrate(legacy)  # the sweep comes from the recorded study.json
    trials = expand(SPEC)
    assert sorted(new for _, new in done["renamed"]) == sorted(t.name for t in trials)
    assert done["unmatched"] == [] and len(old) == 2
    for before, after in done["renamed"]:
        tdir = legacy / "trials" / after
        assert _digest(tdir / "curve.parquet") == old[before]  # the measurement is untouched
        rec = json.loads((tdir / "trial.json").read_text())
        assert rec["format"] == status.FORMAT and rec["migrated_from"] == before
        assert rec["run"]["log_every"] == 5 and "log_every" not in rec["spec"]
        assert rec["grid"]["tokens"] == 7680 and rec["status"] == "completed"
    # a run of the study now has nothing to do (no Ray is even started)
    assert all(launch.is_done(legacy, t) for t in trials)
    launch.run(SPEC, storage=str(legacy), wandb_mode=None, show_progress=False)
    runs = pl.read_parquet(legacy / "runs.parquet")
    assert sorted(runs["trial"]) == sorted(t.name for t in trials)
    assert runs["grid.tokens"].to_list() == [7680, 7680]
    assert sorted(runs["grid.schedule.name"]) == ["constant", "cosine"]
    # migrating again changes nothing
    again = migrate(legacy)
    assert again["renamed"] == [] and len(again["kept"]) == 2


def test_migrate_from_the_study_file_and_cut_short(legacy):
    """Rename first, rewrite second: a folder renamed but not yet rewritten is finished on the
    next run of migrate."""
    (trial,) = [t for t in expand(SPEC) if t.spec.schedule.name == "constant"]
    (old,) = [p for p in (legacy / "trials").iterdir() if "constant" in p.name]
    old.rename(legacy / "trials" / trial.name)  # as if killed between rename and rewrite
    done = migrate(legacy, SPEC)
    assert len(done["renamed"]) == 2
    rec = status.read_record(legacy / "trials" / trial.name)
    assert rec is not None and not status.is_legacy(rec)


def test_new_trainer_reproduces_the_old_curves(tmp_path):
    """Same seeds, same numbers: the redesign moved no measurement. Two runs here agree bit for
    bit; the fixture, written on another machine, to float32 kernel noise (LOSS_RTOL)."""
    exact = ["step", "tokens"]
    close = {"lr": LR_RTOL, "train_loss": LOSS_RTOL, "eval_loss": LOSS_RTOL}
    close["grad_norm"] = GRAD_NORM_RTOL
    for trial in expand(SPEC):
        (old,) = [p for p in (LEGACY / "trials").iterdir() if trial.spec.schedule.name in p.name]
        here = []
        for run in ("a", "b"):
            rec = train(trial, tmp_path / run / trial.name)
            assert rec["status"] == "completed"
            here.append(pl.read_parquet(tmp_path / run / trial.name / "curve.parquet"))
        cols = exact + list(close)
        # the same machine, the same code: identical
        assert here[0].select(cols).equals(here[1].select(cols)), (here[0], here[1])
        a, b = pl.read_parquet(old / "curve.parquet"), here[0]
        assert a.select(exact).equals(b.select(exact)), (a, b)
        for col, rtol in close.items():
            x, y = a[col], b[col]
            assert x.is_null().to_list() == y.is_null().to_list(), col  # eval rows where they were
            np.testing.assert_allclose(
                y.drop_nulls().to_numpy(), x.drop_nulls().to_numpy(), rtol=rtol, atol=0, err_msg=col
            )


def test_collect_reads_old_records_too(legacy):
    runs, curves = results.collect(legacy, write=False)
    assert runs.height == 2 and curves.height == 12  # 30 steps logged every 5
    assert set(runs["workers"]) == {1} and runs["model"].to_list() == ["6K", "6K"]
