"""The training loop: learning, FSDP2 on 2 gloo ranks vs 1 rank, exact resume, divergence."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.train import train

BIN = Path(sys.executable).parent
COMPARE = ["step", "tokens", "lr", "train_loss", "eval_loss", "grad_norm", "noise_scale"]


def tiny(**kw) -> Trial:
    spec = TrialSpec(
        name="t",
        model=ModelSpec(size="50K"),
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("cosine", warmup_steps=5),
        data=DataSpec("pcfg"),
        batch_size=8,
        seq_len=32,
        total_steps=30,
        eval_batch_size=16,
    )
    return Trial(spec, RunConfig(eval_every=10, noise_every=2)).replace(**kw)


def _cli(args, env=None, check=True):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / "scalelab"), *args],
        env=e,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def _curve(d: Path) -> pl.DataFrame:
    return pl.read_parquet(d / "curve.parquet")


def test_tiny_model_learns_the_pcfg_language(tmp_path):
    spec = tiny(
        model=ModelSpec(size="150K"),
        total_steps=300,
        batch_size=16,
        seq_len=64,
        eval_every=50,
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("cosine", warmup_steps=20),
        noise_every=10,
    )
    rec = train(spec, tmp_path)
    h1 = rec["data"]["unigram_entropy"]
    curve = _curve(tmp_path)
    first = curve["train_loss"][0]
    print(
        f"unigram entropy {h1:.3f}, first loss {first:.3f}, final eval {rec['final_eval_loss']:.3f}"
    )
    assert rec["status"] == "completed" and rec["steps_done"] == 300
    assert abs(first - math.log(rec["data"]["vocab_size"])) < 0.5  # init: ~uniform over vocab
    assert rec["final_eval_loss"] < 0.8 * h1  # well below the unigram entropy
    # every step logged once, tokens counted in tokens
    assert curve["step"].to_list() == list(range(1, 301))
    assert curve["tokens"][-1] == 300 * 16 * 64
    assert curve.filter(pl.col("eval_loss").is_not_null())["step"].to_list() == [
        50,
        100,
        150,
        200,
        250,
        300,
    ]
    ns = curve["noise_scale"].drop_nulls()
    assert len(ns) > 0 and ns.is_finite().all()
    trial = json.loads((tmp_path / "trial.json").read_text())
    assert trial["params"]["total"] > trial["params"]["non_embedding"] > 0
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.integration
def test_checkpoint_resume_after_sigkill_gives_the_same_curve(tmp_path):
    spec = tiny(checkpoint_every=5, ewa_decay=0.9)
    (tmp_path / "t.json").write_text(spec.to_json())
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _cli(["train", str(tmp_path / "t.json"), "--out", str(ref)])
    killed = _cli(
        ["train", str(tmp_path / "t.json"), "--out", str(cut), "--wandb", "offline"],
        env={"SCALELAB_KILL_AT_STEP": "17", "WANDB_MODE": "offline"},
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((cut / "trial.json").read_text())["status"] == "running"
    assert sorted(p.name for p in (cut / "ckpt").glob("step_*")) == ["step_0000015"]
    assert len(list((cut / "wandb").glob("offline-run-*"))) == 1
    _cli(["train", str(tmp_path / "t.json"), "--out", str(cut), "--wandb", "offline"])
    # the resumed trial's W&B run replaces the interrupted one: one run, the same id
    (run,) = (cut / "wandb").glob("offline-run-*")
    assert run.name.endswith(json.loads((cut / "trial.json").read_text())["content_hash"])
    a, b = _curve(ref), _curve(cut)
    assert b["step"].to_list() == list(range(1, 31))  # every step exactly once
    cols = COMPARE + ["ewa_eval_loss"]
    assert a.select(cols).equals(b.select(cols)), (a.select(cols), b.select(cols))
    assert json.loads((cut / "trial.json").read_text())["resumed_from"] == 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.slow
def test_fsdp_two_gloo_ranks_match_one_rank(tmp_path):
    one = tiny(total_steps=8, eval_every=4)
    two = one.replace(workers=2)
    (tmp_path / "one.json").write_text(one.to_json())
    (tmp_path / "two.json").write_text(two.to_json())
    _cli(["train", str(tmp_path / "one.json"), "--out", str(tmp_path / "one")])
    e = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "scalelab.cli",
            "train",
            str(tmp_path / "two.json"),
            "--out",
            str(tmp_path / "two"),
        ],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _curve(tmp_path / "one"), _curve(tmp_path / "two")
    rec = json.loads((tmp_path / "two" / "trial.json").read_text())
    assert rec["world_size"] == 2
    for col in ("train_loss", "grad_norm"):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert abs(x - y).max() < 1e-4 * abs(x).max(), (col, x, y)
    assert abs(a["eval_loss"].drop_nulls() - b["eval_loss"].drop_nulls()).max() < 1e-4
    # B_simple from half-batches: with 2 ranks the half batch is one rank's batch
    assert b["noise_scale"].drop_nulls().is_finite().all()


def test_huge_lr_is_recorded_as_diverged(tmp_path):
    spec = tiny(
        optim=OptimSpec(lr=50.0, grad_clip=0.0), schedule=ScheduleSpec("constant"), total_steps=40
    )
    rec = train(spec, tmp_path)
    assert rec["status"] == "diverged"
    assert rec["diverged_step"] in range(1, 40)
    assert json.loads((tmp_path / "trial.json").read_text())["status"] == "diverged"
    assert _curve(tmp_path)["step"][-1] == rec["diverged_step"]


# one example of every registered schedule, with warmup (array: its values include the warmup)
SCHEDULES = {
    "constant": ScheduleSpec("constant", 3),
    "cosine": ScheduleSpec("cosine", 3, {"final_lr": 3e-4}),
    "wsd": ScheduleSpec("wsd", 3, {"decay_steps": 5, "shape": "exp", "final_lr": 3e-4}),
    "step": ScheduleSpec("step", 3, {"milestones": [6, 9], "factor": 0.5}),
    "wsdcon": ScheduleSpec("wsdcon", 3, {"drop_step": 8, "value": 1e-3}),
    "array": ScheduleSpec("array", 0, {"values": [3e-3 * (i + 1) / 12 for i in range(12)]}),
}


def test_every_registered_schedule_is_the_lr_the_optimizer_uses(tmp_path):
    """The optimizer's LR at update t is scalelaws.schedules.lr_array(...)[t], and the curve row
    after s updates logs lr[s - 1] (docs/laws.md §5): one source for trainer and laws."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from scalelaws import schedules

    assert set(SCHEDULES) == set(schedules.REGISTRY)
    used: list[float] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"])
    )
    try:
        for name, sched in SCHEDULES.items():
            used.clear()
            t = tiny(
                model=ModelSpec("6K"), schedule=sched, total_steps=12, log_every=1, noise_every=0
            )
            train(t, tmp_path / name)
            want = schedules.lr_array(
                sched.name, t.spec.optim.lr, 12, sched.warmup_steps, **sched.params
            )
            np.testing.assert_array_equal(used, want, err_msg=name)
            curve = _curve(tmp_path / name)
            assert curve["step"].to_list() == list(range(1, 13))
            np.testing.assert_array_equal(curve["lr"].to_numpy(), want, err_msg=name)
    finally:
        hook.remove()
