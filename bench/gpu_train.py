"""Trainer speed on a GPU: tokens/s and MFU through our trainer (`train()`), for the GPT-2
small and medium shapes (124M, 350M, 50,257-token vocabulary) at seq 1024 in bf16: plain
(one process, autocast) and FSDP2 on one rank, each with torch.compile off and on; FSDP2
across all GPUs as well when there are several. Prints ratios; asserts nothing about time.

    python bench/gpu_train.py [--sizes 124M,350M] [--modes plain,fsdp] [--compile off,on]
        [--steps 40] [--batch 16] [--seq-len 1024] [--vocab-multiple 0] [--json FILE]
    python bench/gpu_train.py --device cpu --tiny    # the same code path, tiny model, seconds

FLOPs: flops_per_token = 6N + 12·L·d·T (model.flops_per_token; PaLM App. B), N with the tied
embedding. MFU = tokens/s × flops_per_token / peak, peak = the datasheet's dense bf16 rate
(H100/H200 SXM: 989 TFLOP/s; --peak-tflops for others); beside it, the same tokens/s against
the rate one large bf16 matmul reaches on this GPU (measured first: a ceiling nearer reality).
tokens/s is the median over the curve rows after the warm-up (compile, allocator), from the
trainer's own `tokens_per_s` column; the corpus is the synthetic PCFG stream in a uint16 token
file read with vocab_size 50,257, so embedding and LM head have GPT-2's shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from scalelab import data as datasets
from scalelab import speed
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

PEAK_BF16 = {"H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0}  # dense TFLOP/s, SXM


def corpus(path: Path, n_tokens: int) -> Path:
    src = datasets.build("pcfg", n_tokens=n_tokens)
    rows = src.batch(0, n_tokens // 1025, 1024).numpy().reshape(-1)
    rows.astype(np.uint16).tofile(path)
    return path


def peak_tflops(arg: float | None) -> float | None:
    if arg:
        return arg
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in PEAK_BF16.items():
        if key in name.split():  # "NVIDIA H200", "NVIDIA H100 80GB HBM3"
            return tflops
    return None


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    """bf16 n×n×n products on random data, timed with CUDA events (3 warm-ups)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


def make_trial(a, size: str, mode: str, compiled: bool, data: DataSpec) -> Trial:
    spec = TrialSpec(
        name=f"{size}-{mode}-{'compile' if compiled else 'eager'}",
        model=ModelSpec(size, vocab_multiple=a.vocab_multiple),
        optim=OptimSpec(lr=6e-4),
        schedule=ScheduleSpec("cosine", max(1, a.steps // 10)),
        batch_size=a.batch,
        seq_len=a.seq_len,
        data=data,
        total_steps=a.steps,
        eval_batch_size=a.batch,
        precision="bf16",
    )
    run = RunConfig(
        fsdp=mode != "plain",
        device=a.device,
        compile=compiled,
        eval_every=a.steps,  # one eval, after the last timed row
        log_every=a.log_every,
        noise_every=0,
    )
    if mode == "fsdp-all":
        n = torch.cuda.device_count()
        spec = TrialSpec.from_dict({**spec.to_dict(), "batch_size": a.batch * n})
        run = RunConfig.from_dict({**run.to_dict(), "workers": n, "gpus_per_worker": 1.0})
    return Trial(spec, run)


def run_one(trial: Trial, out: Path) -> tuple[dict, pl.DataFrame]:
    if trial.run.workers > 1:  # FSDP2 over all GPUs: torchrun this script in --one mode
        (out / "trial.json.in").parent.mkdir(parents=True, exist_ok=True)
        (out / "trial.json.in").write_text(trial.to_json())
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={trial.run.workers}", __file__, "--one", str(out)]
        subprocess.run(cmd, check=True)
        rec = json.loads((out / "trial.json").read_text())
    else:
        rec = train(trial, out)
    return rec, pl.read_parquet(out / "curve.parquet")


def measure(a, trial: Trial, tmp: Path, peak: float | None, ceiling: float | None) -> dict:
    cuda = torch.cuda.is_available() and a.device != "cpu"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    rec, curve = run_one(trial, tmp / trial.spec.name)
    warm = max(a.log_every, a.steps // 3)
    steady = curve.filter(pl.col("step") > warm)["tokens_per_s"].to_list()
    tps = statistics.median(steady) if steady else float("nan")
    fpt = rec["flops_per_token"]
    return {
        "name": trial.spec.name,
        "params_M": rec["params"]["total"] / 1e6,
        "workers": trial.run.workers,
        "speed": rec.get("speed"),
        "status": rec["status"],
        "tokens_per_s": tps,
        "step_ms": 1e3 * trial.spec.tokens_per_step / tps if tps == tps else None,
        "mfu": tps * fpt / (peak * 1e12) if peak else None,
        "of_matmul": tps * fpt / (ceiling * 1e12) if ceiling else None,
        "flops_per_token": fpt,
        "first_row_s": curve["elapsed_s"][0],  # setup + compile + the first rows
        "wall_s": time.time() - t0,
        "loss_first": curve["train_loss"][0],
        "loss_last": curve["train_loss"][-1],
        "eval": rec["final_eval_loss"],
        "peak_mem_GB": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
    }


def fmt(r: dict) -> str:
    def f(v, spec):
        return format(v, spec) if isinstance(v, int | float) and v == v else "-"

    return (
        f"{r['name']:24s} {r['params_M']:7.1f}M  {f(r['tokens_per_s'], ',.0f'):>10s} tok/s  "
        f"{f(r['step_ms'], '.1f'):>7s} ms/step  MFU {f(r['mfu'], '.3f')}  "
        f"(of matmul {f(r['of_matmul'], '.3f')})  mem {f(r['peak_mem_GB'], '.1f')} GB  "
        f"first row {r['first_row_s']:.0f} s  loss {r['loss_first']:.2f}->{r['loss_last']:.2f}  "
        f"{r['status']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="124M,350M")
    ap.add_argument("--modes", default="plain,fsdp", help="plain, fsdp (1 rank), fsdp-all")
    ap.add_argument("--compile", default="off,on")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--vocab-multiple", type=int, default=0, help="128: 50,257 -> 50,304")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="150K model, seq 64: a CPU dry run")
    ap.add_argument(
        "--compile-backend", default=None, help="default inductor (CPU --tiny: aot_eager)"
    )
    ap.add_argument("--json", default=None, help="write every result here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a torchrun rank
    a = ap.parse_args()
    if a.one:
        train(Trial.from_json((Path(a.one) / "trial.json.in").read_text()), a.one)
        return
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_train: no CUDA device here. This benchmark needs a GPU; "
            "`--device cpu --tiny` runs the same code path on a tiny model."
        )
    if a.tiny:
        a.sizes, a.seq_len, a.batch = "150K", 64, 8
        a.steps, a.log_every = min(a.steps, 12), 2
        if a.device == "cpu":
            a.compile_backend = a.compile_backend or "aot_eager"  # inductor: ~70 s here
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    if a.compile_backend:
        speed.COMPILE_BACKEND = a.compile_backend
    modes = a.modes.split(",")
    if "fsdp-all" in modes and (a.device == "cpu" or torch.cuda.device_count() < 2):
        print("fsdp-all: skipped (needs 2 or more GPUs)")
        modes.remove("fsdp-all")
    compiles = [{"off": False, "on": True}[c] for c in a.compile.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    path = corpus(tmp / "pcfg.bin", 2_000_000 if not a.tiny else 200_000)
    vocab = 512 if a.tiny else 50257
    data = DataSpec("tokens", params={"path": str(path), "dtype": "uint16", "vocab_size": vocab})

    cuda = a.device == "cuda"
    peak = peak_tflops(a.peak_tflops) if cuda else None
    ceiling = matmul_tflops() if cuda else None
    name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}   torch {torch.__version__}   CUDA {torch.version.cuda}")
    print("FLOPs/token = 6N + 12·L·d·T (N: all parameters, tied embedding once; T: seq_len)")
    print(
        f"peak: {peak or '-'} TFLOP/s dense bf16 (datasheet)   "
        f"measured bf16 matmul 8192³: {f'{ceiling:.0f}' if ceiling else '-'} TFLOP/s"
    )
    print(
        f"batch {a.batch}×{a.seq_len} tokens, {a.steps} steps, bf16, median after step "
        f"{max(a.log_every, a.steps // 3)}; compile backend {speed.COMPILE_BACKEND}"
    )
    results = []
    for size in a.sizes.split(","):
        for mode in modes:
            for c in compiles:
                trial = make_trial(a, size, mode, c, data)
                try:
                    r = measure(a, trial, tmp, peak, ceiling)
                except Exception as e:  # report and go on: one failure must not hide the rest
                    print(f"{trial.spec.name:24s} FAILED {type(e).__name__}: {e}", flush=True)
                    results.append({"name": trial.spec.name, "error": f"{type(e).__name__}: {e}"})
                    continue
                results.append(r)
                print(fmt(r), flush=True)
                if a.json:
                    Path(a.json).write_text(json.dumps(results, indent=1, default=str))
    by = {r["name"]: r for r in results if "tokens_per_s" in r}
    print("ratios (tokens/s):")
    for size in a.sizes.split(","):
        for mode in modes:
            on, off = by.get(f"{size}-{mode}-compile"), by.get(f"{size}-{mode}-eager")
            if on and off:
                print(
                    f"  {size} {mode}: compile on / off = {on['tokens_per_s'] / off['tokens_per_s']:.2f}"
                )
        for c in ("eager", "compile"):
            f, p = by.get(f"{size}-fsdp-{c}"), by.get(f"{size}-plain-{c}")
            if f and p:
                print(
                    f"  {size} {c}: FSDP2 1 rank / plain = {f['tokens_per_s'] / p['tokens_per_s']:.2f}"
                )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
