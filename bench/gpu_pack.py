"""Packing small trials on one GPU: 4 trials at once (one process each, as Ray runs trials
with gpus_per_worker=0.25) against the same 4 one after another; prints the aggregate
throughput ratio. Asserts nothing about time.

    python bench/gpu_pack.py [--trials 4] [--size 5M] [--steps 300] [--batch 32] [--seq-len 256]
        [--compile false] [--mps] [--json FILE]
    python bench/gpu_pack.py --device cpu --tiny     # the same code path on CPU, seconds

Each trial is a process of its own that imports torch, opens its CUDA context, then waits at a
barrier; only then does the clock start (Ray reuses trial actors, so process start is paid
once per slot, not per trial). Throughput = all trials' training tokens / wall time from the
first train() call to the last one's end:
    sequential  = Σ tokens / Σ (wall of each trial alone)
    packed      = Σ tokens / (last end − first start), all 4 at once
    ratio       = packed / sequential   (4.0 would be perfect packing; 1.0 no gain)
Without MPS the GPU time-slices between processes: kernels of different processes do not
overlap, so packing wins only the time each trial leaves the GPU idle (Python, launches, host
syncs). `--mps` repeats the packed phase under the CUDA MPS server (if the machine has it),
where kernels of the 4 processes can run at once; the server is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GO_POLL_S = 0.005


def worker(a) -> None:
    """One trial: set up, wait at the barrier, train, write its timings."""
    import torch

    from scalelab.config import Trial
    from scalelab.train import train

    d = Path(a.worker)
    trial = Trial.from_json((d / "trial.json.in").read_text())
    if trial.run.device == "cuda":
        torch.zeros(1, device="cuda")  # CUDA context before the clock starts
    (d / "ready").touch()
    while not Path(a.go).exists():
        time.sleep(GO_POLL_S)
    t0 = time.time()
    rec = train(trial, d / "out")
    t1 = time.time()
    (d / "timing.json").write_text(json.dumps({"t0": t0, "t1": t1, "tokens": rec["tokens_seen"]}))


def launch(dirs: list[Path], go: Path, env: dict) -> list[dict]:
    """Start a worker per folder, release them together at `go`, wait; their timings."""
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(d), "--go", str(go)], env=env)
        for d in dirs
    ]
    while not all((d / "ready").exists() for d in dirs):
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    go.touch()
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"a trial process failed (exit codes {codes})")
    return [json.loads((d / "timing.json").read_text()) for d in dirs]


def steady_tokens_per_s(d: Path, warm: int) -> float:
    import polars as pl

    curve = pl.read_parquet(d / "out" / "curve.parquet")
    rows = curve.filter(pl.col("step") > warm)["tokens_per_s"].to_list()
    return statistics.median(rows) if rows else float("nan")


def phase(name: str, trials, root: Path, env: dict, together: bool, warm: int) -> dict:
    dirs = []
    for i, t in enumerate(trials):
        d = root / name / f"t{i}"
        d.mkdir(parents=True)
        (d / "trial.json.in").write_text(t.to_json())
        dirs.append(d)
    if together:
        times = launch(dirs, root / name / "go", env)
        wall = max(t["t1"] for t in times) - min(t["t0"] for t in times)
    else:
        times = [launch([d], d / "go", env)[0] for d in dirs]
        wall = sum(t["t1"] - t["t0"] for t in times)
    tokens = sum(t["tokens"] for t in times)
    per_trial = [steady_tokens_per_s(d, warm) for d in dirs]
    return {
        "phase": name,
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "per_trial_steady_tokens_per_s": per_trial,
    }


class MPS:
    """The CUDA MPS control daemon in a private pipe directory, stopped on exit."""

    def __init__(self, root: Path):
        self.env = {
            "CUDA_MPS_PIPE_DIRECTORY": str(root / "mps_pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(root / "mps_log"),
        }
        for v in self.env.values():
            Path(v).mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> dict:
        env = {**os.environ, **self.env}
        subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, check=True, timeout=30)
        return env

    def __exit__(self, *exc) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=env, timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=None, help="default 4 (--tiny: 2)")
    ap.add_argument("--size", default="5M", help="a preset; 1M-20M are the small trials")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--compile", default="false", choices=["false", "true", "auto"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="6K model, 20 steps: a CPU dry run")
    ap.add_argument("--mps", action="store_true", help="also the packed phase under CUDA MPS")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--go", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return

    import torch

    from scalelab import data as datasets
    from scalelab.config import (
        DataSpec,
        ModelSpec,
        OptimSpec,
        RunConfig,
        ScheduleSpec,
        Trial,
        TrialSpec,
    )

    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_pack: no CUDA device here. This benchmark needs a GPU; "
            "`--device cpu --tiny` runs the same code path on CPU."
        )
    if a.tiny:
        a.size, a.steps, a.batch, a.seq_len = "6K", min(a.steps, 20), 8, 32
    a.trials = a.trials or (2 if a.tiny else 4)
    compile_ = {"false": False, "true": True, "auto": "auto"}[a.compile]
    log_every = max(1, a.steps // 20)
    trials = [
        Trial(
            TrialSpec(
                name=f"pack-{a.size}-s{seed}",
                model=ModelSpec(a.size),
                optim=OptimSpec(lr=3e-3),
                schedule=ScheduleSpec("cosine", max(1, a.steps // 10)),
                data=DataSpec("pcfg"),
                batch_size=a.batch,
                seq_len=a.seq_len,
                total_steps=a.steps,
                seed=seed,
                precision=a.precision,
            ),
            RunConfig(
                device=a.device,
                gpus_per_worker=1 / a.trials if a.device == "cuda" else 0.0,
                compile=compile_,
                log_every=log_every,
                eval_every=a.steps,
                noise_every=10,
            ),
        )
        for seed in range(a.trials)
    ]
    for t in trials[:1]:  # the data cache (~/.cache/scalelab) is filled here, not in a timed trial
        datasets.build(t.spec.data.name, seed=t.spec.data.seed, **t.spec.data.params)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if a.device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    name = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}   torch {torch.__version__}")
    print(
        f"{a.trials} trials of {a.size} ({a.batch}×{a.seq_len} tokens, {a.steps} steps, "
        f"{a.precision}, compile {a.compile}, gpus_per_worker {trials[0].run.gpus_per_worker:g})"
    )
    warm = a.steps // 4
    root = Path(tempfile.mkdtemp(prefix="gpu_pack_"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still cleans up
    results = []

    def done(r: dict) -> None:
        results.append(r)
        steady = ", ".join(f"{v:,.0f}" for v in r["per_trial_steady_tokens_per_s"])
        print(
            f"{r['phase']:11s} wall {r['wall_s']:7.1f} s  aggregate {r['tokens_per_s']:>10,.0f} "
            f"tokens/s   per trial (steady) {steady}",
            flush=True,
        )
        if len(results) > 1:
            ratio = r["tokens_per_s"] / results[0]["tokens_per_s"]
            print(f"ratio {r['phase']} / sequential aggregate throughput = {ratio:.2f}", flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1))

    try:
        done(phase("sequential", trials, root, env, together=False, warm=warm))
        done(phase("packed", trials, root, env, together=True, warm=warm))
        if a.mps and a.device == "cuda":
            if shutil.which("nvidia-cuda-mps-control") is None:
                print("mps: nvidia-cuda-mps-control not found; skipped")
            else:
                with MPS(root) as mps_env:
                    done(phase("packed-mps", trials, root, mps_env, True, warm))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
