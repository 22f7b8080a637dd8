"""GPU-only: bf16 + FSDP2 (NCCL) training of a real model, the speed switches (compile, fused
AdamW, activation checkpointing) against the eager run, no host sync inside a step, and 4
trials packed on one GPU. Skips cleanly without CUDA; bench/gpu_check.sh runs it on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch

from scalelab import launch
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

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _spec(**kw) -> TrialSpec:
    base = dict(
        name="gpu",
        model=ModelSpec("20M"),
        optim=OptimSpec(lr=1e-3),
        schedule=ScheduleSpec("cosine", 10),
        data=DataSpec("pcfg"),
        batch_size=32,
        seq_len=256,
        total_steps=60,
        precision="bf16",
    )
    return TrialSpec(**{**base, **kw})


@needs_cuda
def test_fsdp2_bf16_on_one_gpu_learns(tmp_path):
    spec = _spec()
    rec = train(spec, tmp_path, RunConfig(eval_every=30, fsdp=True, device="cuda", compile=False))
    assert rec["status"] == "completed" and rec["device"].startswith("cuda")
    assert rec["final_eval_loss"] < 0.8 * rec["data"]["unigram_entropy"]


@needs_cuda
def test_compile_ac_fused_fsdp2_bf16_matches_the_eager_run(tmp_path):
    """Same init, same batches: compile + activation checkpointing change the numbers only by
    bf16 rounding. Fused AdamW and TF32 are on in both (always on CUDA)."""
    spec = _spec(total_steps=30)
    eager = RunConfig(eval_every=15, noise_every=0, fsdp=True, device="cuda", compile=False)
    fast = replace(eager, compile=True, activation_checkpointing=True)
    recs, curves = {}, {}
    for name, run in (("eager", eager), ("fast", fast)):
        recs[name] = train(spec, tmp_path / name, run)
        curves[name] = pl.read_parquet(tmp_path / name / "curve.parquet")
        assert recs[name]["status"] == "completed"
        assert recs[name]["speed"]["fused_adamw"] and recs[name]["speed"]["tf32"]
        print(name, recs[name]["speed"], curves[name]["train_loss"].to_list()[::5])
    assert recs["fast"]["speed"]["compile"] and not recs["eager"]["speed"]["compile"]
    ref, loss = curves["eager"]["train_loss"].to_numpy(), curves["fast"]["train_loss"].to_numpy()
    assert abs(loss[0] - ref[0]) < 5e-3 * ref[0], (loss[0], ref[0])  # same init, same batch
    assert (abs(loss - ref) < 3e-2 * ref).all(), (loss, ref)
    ev, ev_ref = recs["fast"]["final_eval_loss"], recs["eager"]["final_eval_loss"]
    assert abs(ev - ev_ref) < 3e-2 * ev_ref, (ev, ev_ref)


@needs_cuda
def test_no_host_sync_inside_a_step(tmp_path):
    """Between logged rows the loop never waits for the GPU: torch raises on any synchronizing
    call (.item(), blocking copies, ...) in sync-debug mode "error". Covers the noise probe,
    clipping, EWA, FSDP2 bf16, fused AdamW and the compiled blocks."""
    from scalelab.train.noise import NoiseScale
    from scalelab.train.recorder import Recorder
    from scalelab.train.step import read_all
    from scalelab.train.trainer import Loop, setup

    trial = Trial(
        _spec(ewa_decay=0.9, total_steps=20),
        RunConfig(noise_every=2, fsdp=True, device="cuda", compile=True),
    )
    s, _ = setup(trial)
    loop = Loop(s, Recorder(tmp_path, {}, s.rank), NoiseScale(), None, False)
    s.model.train()
    stats = [loop.step(i) for i in range(4)]  # warm-up: compile, allocator, lazy init
    read_all(stats)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = [loop.step(i) for i in range(4, 8)]  # steps 4 and 6 probe the noise scale
    finally:
        torch.cuda.set_sync_debug_mode(0)
    read_all(stats)  # the one sync of a logged row
    assert all(st.loss == st.loss and st.grad_norm > 0 for st in stats)
    assert stats[0].g2_small is not None and stats[1].g2_small is None


WORKER = """
import json, sys
from scalelab.config import Trial
from scalelab.train import train
rec = train(Trial.from_json(sys.argv[1]), sys.argv[2])
print(json.dumps({k: rec[k] for k in ("status", "final_eval_loss", "device")}))
"""


@needs_cuda
def test_four_trials_packed_on_one_gpu(tmp_path):
    """gpus_per_worker=0.25: four one-worker trials share the GPU (Ray would start them in
    four actors; here four processes) and each trains as it would alone."""
    trials = [
        Trial(
            _spec(name=f"p{seed}", model=ModelSpec("1M"), total_steps=40, seed=seed),
            RunConfig(device="cuda", gpus_per_worker=0.25, compile=False, eval_every=40),
        )
        for seed in range(4)
    ]
    assert launch.concurrency(trials, {"CPU": 16, "GPU": 1}) == 4
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, t.to_json(), str(tmp_path / t.name)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for t in trials
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    recs = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    assert all(r["status"] == "completed" and r["device"].startswith("cuda") for r in recs)
    alone = train(trials[0], tmp_path / "alone")
    ev, ev_alone = recs[0]["final_eval_loss"], alone["final_eval_loss"]
    assert abs(ev - ev_alone) < 2e-2 * ev_alone, (ev, ev_alone)
    for t in trials:
        assert Path(tmp_path / t.name / "curve.parquet").exists()
