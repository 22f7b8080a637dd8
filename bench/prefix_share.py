"""Shared prefixes on and off: a WSD cooldown study trained both ways on this machine.

    .venv/bin/python bench/prefix_share.py [--horizon 400] [--seeds 3] [--size 50K]

The study: one horizon H, per seed the constant run plus WSD cooldowns of 10-50% of H (step
10%) in two shapes (linear, 1-sqrt): 11 trials per seed, 33 with 3 seeds. From scratch it
trains 33·H updates; its prefix tree 12·H less one update per cooldown (a cooldown's first
update still uses the peak LR, so it is shared too). Both runs go through `launch.run` on an
embedded local Ray, one after the other in this process (sharing off first), with W&B off.

Prints the updates each run trained (read back from the trials' records: steps_done minus
the fork step) against the tree's minimum, the wall-time ratio shared / from scratch (goal
<= 0.50 on 2 cores), and whether every curve is bit-identical between the two runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from scalelab import launch, prefix
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand

PEAK = 3e-3
NUMBERS = ["step", "tokens", "lr", "train_loss", "eval_loss", "grad_norm", "noise_scale"]


def study(root: Path, name: str, horizon: int, seeds: int, size: str, share: bool) -> SweepSpec:
    schedules = [ScheduleSpec("constant", 10)]
    for shape in ("linear", "1-sqrt"):
        schedules += [
            ScheduleSpec("wsd", 10, {"decay_frac": f, "shape": shape, "final_lr": PEAK / 10})
            for f in (0.1, 0.2, 0.3, 0.4, 0.5)
        ]
    return SweepSpec(
        name,
        TrialSpec(model=ModelSpec(size), optim=OptimSpec(lr=PEAK), data=DataSpec("pcfg"),
                  batch_size=16, seq_len=64, total_steps=horizon, eval_batch_size=64),
        grid={"schedule": schedules, "seed": list(range(seeds))},
        run=RunConfig(eval_every=50, log_every=10, noise_every=10, device="cpu",
                      share_prefixes=share),
        storage=str(root / name),
    )  # fmt: skip


def trained(root: Path) -> int:
    """Updates trained in this run, from each trial's record."""
    total = 0
    for p in (root / "trials").glob("*/trial.json"):
        rec = json.loads(p.read_text())
        total += rec["steps_done"] - (rec.get("forked_from") or {}).get("step", 0)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--horizon", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", default="50K")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roots, wall = {}, {}
        for share in (False, True):
            spec = study(Path(tmp), f"wsd_{'shared' if share else 'scratch'}", a.horizon,
                         a.seeds, a.size, share)  # fmt: skip
            t0 = time.perf_counter()
            roots[share] = launch.run(spec, wandb_mode=None, show_progress=False)
            wall[share] = time.perf_counter() - t0
        plan = prefix.plan(expand(spec))
        n = len(plan.total_steps)
        print(f"WSD cooldown study: {n} trials, horizon {a.horizon}, model {a.size}")
        print(f"  tree: {plan.summary()}")
        for share, label in ((False, "from scratch"), (True, "shared")):
            print(f"  {label:>12}: trained {trained(roots[share]):,} updates, "
                  f"{wall[share]:.1f} s wall")  # fmt: skip
        ok = trained(roots[True]) == plan.trained_steps()
        print(f"  shared run trained the tree's minimum ({plan.trained_steps():,}): {ok}")
        print(f"  steps ratio {plan.trained_steps() / plan.scratch_steps():.3f}, "
              f"wall-time ratio {wall[True] / wall[False]:.3f} (goal <= 0.50)")  # fmt: skip
        same = []
        for d in sorted((roots[False] / "trials").iterdir()):
            a_ = pl.read_parquet(d / "curve.parquet").select(NUMBERS)
            b_ = pl.read_parquet(roots[True] / "trials" / d.name / "curve.parquet").select(NUMBERS)
            same.append(a_.equals(b_))
        print(f"  curves bit-identical between the two runs: {sum(same)} of {len(same)}")


if __name__ == "__main__":
    main()
