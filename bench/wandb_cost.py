"""What W&B offline costs a short trial: the same trials trained in this process with W&B
offline and without it, alternating (A B A B ...) so this VM's drift between minutes cancels.

    OMP_NUM_THREADS=1 .venv/bin/python bench/wandb_cost.py [--pairs 20] [--steps 300]

(OMP_NUM_THREADS=1: as Ray sets it in a study's one-CPU trial runners.)

Counts CPU, not only wall time: W&B's service (`wandb-core`) runs in its own process, which a
study on 2 busy cores pays for as much as the trial itself. Per trial:

    cost = (CPU with W&B - CPU without) / CPU without     (goal <= 5%: issue 18)

with CPU = this process's user+system time + the W&B service's, read from /proc.
The trials are sweep_scale's study (6K model, 300 steps, ~1.3 s on one core, the default W&B
rows); each pair trains the same trial both ways.

    .venv/bin/python bench/wandb_cost.py --studies 3 [--trials 60]

runs the whole study instead (`scalelab run` on a local Ray, every slot busy), with W&B offline
and with `--no-wandb`, alternating, and compares their wall times: what W&B adds to a study.
Pairs of 1-minute studies on this VM spread by 1-20%: its speed drifts between minutes.

    .venv/bin/python bench/wandb_cost.py --pinned 4 [--trials 30]

runs each pair at the same time instead, one study per core (the study, its Ray, runner and
W&B services pinned there, one trial at a time), swapping the cores each pair: both studies
see the same drift. A 30-trial study on one core lasts as long as a 60-trial study on two.
`--aa` runs both without W&B: its spread is the bench's own noise (on this VM -11% to +12%
per pair of 30-trial studies: the two cores are not equally fast from minute to minute).
Prints where the difference goes: set-up before the first trial, training (each trial.json's
wall_s, W&B's run opening inside it), gaps between trials (W&B's run closing), the end (the
analysis run).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from sweep_scale import STUDY, run_study, start_study, timeline, wait_study  # bench/ on sys.path

from scalelab import study as studies
from scalelab.sweep import expand
from scalelab.train import train


def service_cpu() -> float:
    """CPU seconds of this process's W&B service processes (children named wandb-core)."""
    hz, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and name.startswith("wandb"):
            total += (int(stat[11]) + int(stat[12])) / hz
    return total


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def whole_studies(pairs: int, trials: int, steps: int) -> None:
    """`pairs` x the study with W&B offline and without, alternating which goes first."""
    walls: dict[str, list[float]] = {"offline": [], "off": []}
    with tempfile.TemporaryDirectory() as d:
        study = Path(d) / "scale.py"
        study.write_text(STUDY.format(steps=steps, seeds=max(1, trials // 6)))
        for i in range(pairs):
            for mode in ("offline", "off") if i % 2 == 0 else ("off", "offline"):
                t = time.perf_counter()
                run_study(study, Path(d) / f"{mode}-{i}", wandb=mode == "offline")
                walls[mode].append(time.perf_counter() - t)
                print(f"pair {i}: W&B {mode:8s} {walls[mode][-1]:6.1f}s", flush=True)
    on, off = (statistics.median(walls[m]) for m in ("offline", "off"))
    ratios = [a / b for a, b in zip(walls["offline"], walls["off"], strict=True)]
    print(
        f"{trials} trials of {steps} steps: study with W&B offline {on:.1f}s, without {off:.1f}s "
        f"(medians of {pairs}): W&B costs {on / off - 1:+.1%} of the study (goal <= 5%); "
        f"per pair " + ", ".join(f"{r - 1:+.1%}" for r in ratios)
    )


def pinned_studies(pairs: int, trials: int, steps: int, aa: bool = False) -> None:
    """`pairs` x the study with W&B offline and without at the same time, one per core.
    aa: both without W&B (an A/A run: the spread it prints is the bench's own noise)."""
    phases = ("wall", "set-up", "training", "gaps", "end")
    got: dict[str, list[dict]] = {"offline": [], "off": []}
    on = "also without W&B (A/A)" if aa else "W&B offline"
    la, lb = ("A", "B") if aa else ("with W&B", "without")
    with tempfile.TemporaryDirectory() as d:
        study = Path(d) / "scale.py"
        study.write_text(STUDY.format(steps=steps, seeds=max(1, trials // 6)))
        for i in range(pairs):
            cores = {"offline": i % 2, "off": 1 - i % 2}
            out = {m: Path(d) / f"{m}-{i}" for m in cores}
            t0 = time.time()
            procs = {
                m: start_study(study, out[m], m == "offline" and not aa, core=c)
                for m, c in cores.items()
            }
            exited: dict[str, float] = {}
            while len(exited) < len(procs):
                time.sleep(0.02)
                for m, proc in procs.items():
                    if m not in exited and proc.poll() is not None:
                        exited[m] = time.time()
            for m, proc in procs.items():
                wait_study(proc)
                got[m].append(timeline(out[m], t0, exited[m]))
            w, o = got["offline"][-1]["wall"], got["off"][-1]["wall"]
            print(f"pair {i}: {on} {w:5.1f}s (core {cores['offline']}), without "
                  f"{o:5.1f}s: {w / o - 1:+.1%}", flush=True)  # fmt: skip
    ratios = [a["wall"] / b["wall"] - 1 for a, b in zip(got["offline"], got["off"], strict=True)]
    print(
        f"{trials} trials of {steps} steps, one core each, both at once: {on} costs "
        f"{statistics.median(ratios):+.1%} of the study (median of {pairs}; goal <= 5%), per "
        f"pair " + ", ".join(f"{r:+.1%}" for r in ratios)
    )
    if pairs >= 3:  # the pairs' spread (an A/A run shows how much of it is this VM's noise)
        from scipy import stats

        mean, sem = statistics.mean(ratios), statistics.stdev(ratios) / math.sqrt(pairs)
        half = stats.t.ppf(0.975, pairs - 1) * sem
        print(f"  mean {mean:+.1%}, 95% interval [{mean - half:+.1%}, {mean + half:+.1%}]")
    for ph in phases:
        a, b = (statistics.median(x[ph] for x in got[m]) for m in ("offline", "off"))
        print(f"  {ph:9s} {la} {a:6.2f}s  {lb} {b:6.2f}s  difference {a - b:+.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--studies", type=int, default=0, help="pairs of whole studies instead")
    ap.add_argument("--pinned", type=int, default=0, help="pairs of studies at once, a core each")
    ap.add_argument("--trials", type=int, help="trials per study: 60 (--studies), 30 (--pinned)")
    ap.add_argument("--aa", action="store_true", help="--pinned with both studies without W&B")
    a = ap.parse_args()
    if a.studies:
        return whole_studies(a.studies, a.trials or 60, a.steps)
    if a.pinned:
        return pinned_studies(a.pinned, a.trials or 30, a.steps, a.aa)
    os.environ.setdefault("WANDB_SILENT", "true")
    cost = {"offline": ([], []), None: ([], [])}  # mode -> (wall, cpu) per trial
    with tempfile.TemporaryDirectory() as d:
        study = Path(d) / "scale.py"  # 6 trials per seed: enough seeds for the pairs + warm-up
        study.write_text(STUDY.format(steps=a.steps, seeds=math.ceil((a.pairs + 1) / 6)))
        trials = expand(studies.load(study).SPEC)
        for mode in ("offline", None):  # warm: imports, data, the W&B service
            train(trials[0], Path(d) / f"warm-{mode}", wandb_mode=mode)
        for i, trial in enumerate(trials[1 : a.pairs + 1]):
            for mode in ("offline", None) if i % 2 else (None, "offline"):
                c, s, t = own_cpu(), service_cpu(), time.perf_counter()
                train(trial, Path(d) / f"{mode}-{i}", wandb_mode=mode)
                time.sleep(0.05)  # the service finishes writing the run it was handed
                cost[mode][0].append(time.perf_counter() - t)
                cost[mode][1].append(own_cpu() - c + service_cpu() - s)
    for mode, (wall, cpu) in cost.items():
        print(
            f"W&B {mode or 'off':8s} wall {statistics.median(wall):.3f}s  "
            f"CPU {statistics.median(cpu):.3f}s per trial (median of {len(wall)})"
        )
    on, off = (statistics.median(cost[m][1]) for m in ("offline", None))
    won, woff = (statistics.median(cost[m][0]) - 0.05 for m in ("offline", None))
    print(
        f"W&B offline costs {on - off:+.3f}s of CPU per trial = {(on - off) / off:+.1%} "
        f"(goal <= 5%); wall in this process {(won - woff) / woff:+.1%}"
    )


if __name__ == "__main__":
    main()
