"""Our training loop's time per step vs a bare PyTorch loop on the same model and batch.

    .venv/bin/python bench/trainer_overhead.py [--size 150K] [--steps 300]

Both run in this process, one after the other, on the same data; the ratio is what matters
(goal <= 1.05). Our loop includes the schedule, per-step metrics (loss all-reduce, grad norm, throughput),
progress file and logging; eval runs only at the last step, which is not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from scalelab import data as datasets
from scalelab import parallel
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.train import build, make_optimizer, train


def bare_loop(spec: TrialSpec) -> float:
    """The baseline: nanoGPT's inner loop with nothing else."""
    source, model, seq_len = build(spec, torch.device("cpu"))
    opt = make_optimizer(model, spec)
    batches = [source.batch(s, spec.batch_size, seq_len) for s in range(spec.total_steps)]
    t0 = time.perf_counter()
    for b in batches:
        _, loss = model(*datasets.inputs_targets(b))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / spec.total_steps


def our_loop(spec: Trial) -> float:
    """Seconds per step between the first and the second-to-last logged step (no set-up)."""
    with tempfile.TemporaryDirectory() as d:
        train(spec, d)
        e = pl.read_parquet(Path(d) / "curve.parquet")["elapsed_s"]
    return (e[-2] - e[0]) / (len(e) - 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="150K")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    parallel.keep_freed_memory()  # what train() sets for its process: the same for both loops
    spec = TrialSpec(
        name="bench",
        model=ModelSpec(a.size),
        optim=OptimSpec(lr=1e-3),
        schedule=ScheduleSpec("cosine", 10),
        data=DataSpec("pcfg"),
        batch_size=a.batch,
        seq_len=a.seq_len,
        total_steps=a.steps,
        eval_batch_size=16,
    )
    run = RunConfig(eval_every=a.steps, log_every=1, noise_every=0, cpus_per_worker=a.threads)
    bare_loop(spec)  # warm-up: data cache, allocator
    base = bare_loop(spec)
    ours = our_loop(Trial(spec, run))
    ours_noise = our_loop(Trial(spec, run).replace(noise_every=10))
    tok = a.batch * a.seq_len
    print(f"model {a.size}, batch {a.batch}x{a.seq_len}, {a.steps} steps, {a.threads} thread(s)")
    print(f"bare PyTorch loop     {base * 1e3:8.2f} ms/step  {tok / base:10.0f} tokens/s")
    print(
        f"scalelab train()      {ours * 1e3:8.2f} ms/step  ratio {ours / base:.3f}  (goal <= 1.05)"
    )
    print(f"  + noise scale /10   {ours_noise * 1e3:8.2f} ms/step  ratio {ours_noise / base:.3f}")


if __name__ == "__main__":
    main()
