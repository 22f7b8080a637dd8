"""Critical batch size (CBS) study on the synthetic PCFG language (issue 5).

Laws (docs/laws.md §2): McCandlish et al. 2018, S(B) = S_min + E_min/B, B_crit = E_min/S_min;
Zhang et al., ICLR 2025 (arXiv 2410.21676): T(B) = fewest steps to a target (EWA) eval loss,
minimised over the LR sweep, fitted as a + b/B; CBS = 1.2·B_ref + b/(5a).

Design. One run per (model size N, batch size B, LR): constant LR after a short warmup, with an
EWA of the weights (Zhang et al.), evaluated every `eval_every` steps; B_simple every 5 steps.
A group is (N, D): its target is the best EWA eval loss over the LRs at B_REF after D tokens,
and T(B) is each run's first crossing of that target. The LR is constant after warmup and the
data are a pure function of the step, so a run with a budget of D tokens is exactly a prefix of
the longer run: one run per (N, B, LR) serves every D (the reason Zhang et al. train at a
constant LR with EWA). Runs at B > B_REF get more tokens than D_max, since past B_crit they need
more data to reach the same loss: tokens(B) = D_max·margin·(1 + B/knee)/(1 + B_REF/knee), with
`knee` a guess of B_crit at D_max (from a pilot: ≈ 47 sequences for the 150K model at the
1.3M-token target).

    scalelab run experiments/critical_batch.py --no-wandb              # quick: 2 CPU cores
    scalelab run experiments/critical_batch.py --preset cluster        # GPUs, 20M-124M GPTs

`after(root)` builds the per-D tables (root/cbs/), fits them with scalelaws.fit_cbs on the EWA
loss (CBS.json, cbs.png) and the raw loss (CBS_raw.json), and writes CBS.md and cbs_study.png
(scalelaws.critical_batch.study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec


@dataclass(frozen=True)
class Design:
    name: str  # study name (results/<name>/)
    sizes: tuple[str, ...]  # model.SIZES names
    data_sizes: tuple[int, ...]  # D (tokens); each a multiple of B_ref·seq_len·eval_every_ref
    batch_sizes: tuple[int, ...]  # sequences per step; the first (smallest) is B_ref
    base_lr: dict[str, float]  # per size: the LR centre at B >= lr_b0
    lr_b0: int = 16  # below it the LR centre shrinks as sqrt(B/lr_b0)
    lr_steps: tuple[int, ...] = (-1, 0, 1)  # LR grid: half-decade steps around the centre
    knee: float = 48.0  # guess of B_crit at D_max (sequences): sets the big-batch budgets
    margin: float = 1.3  # extra tokens beyond the expected need at B > B_ref
    warmup_tokens: int = 50_000  # linear warmup; steps = max(5, warmup_tokens / (B·L))
    ewa_tokens: int = 20_000  # EWA time constant tau = max(5, ewa_tokens / (B·L)) steps
    eval_every_ref: int = 50  # steps between evals at B_ref (must divide D / (B_ref·L))
    evals_per_run: int = 80  # eval points of a run at B > B_ref
    noise_batch: int = 0  # read B_simple at the target from this B's best run; 0 = B_ref
    base: TrialSpec = field(default_factory=TrialSpec)
    run: RunConfig = field(default_factory=RunConfig)  # placement; eval_every is set per point

    @property
    def ref_batch(self) -> int:
        return self.batch_sizes[0]

    @property
    def seq_len(self) -> int:
        return self.base.seq_len


def lrs(d: Design, size: str, batch: int) -> list[float]:
    """LR grid at (N, B) on the half-decade ladder 1e-3, 3e-3, 1e-2, ...: the rung nearest (in
    log) to base_lr[N]·min(1, sqrt(B/lr_b0)), and its neighbours `lr_steps` rungs away."""
    centre = d.base_lr[size] * min(1.0, math.sqrt(batch / d.lr_b0))
    rung = round(2 * math.log10(centre))  # half-decades: 10^(rung/2)
    return [_rung_lr(rung + k) for k in d.lr_steps]


def _rung_lr(rung: int) -> float:
    """10^(r/2) written as 1e-k or 3e-k: 10^-2.5 -> 3e-3 (a 3.16 -> 3 rounding)."""
    return float(f"{10 ** math.floor(rung / 2) * (3 if rung % 2 else 1):.0e}")


def budget_tokens(d: Design, batch: int) -> int:
    """Tokens of the run at B: D_max at B_ref; above it (1 + B/knee) grows like E(B)/E_min."""
    d_max = max(d.data_sizes)
    if batch == d.ref_batch:
        return d_max
    grow = (1 + batch / d.knee) / (1 + d.ref_batch / d.knee)
    return int(d_max * d.margin * grow)


def trial_point(d: Design, size: str, batch: int, lr: float) -> dict:
    """One grid point: budget, warmup, EWA decay and eval spacing all depend on B."""
    tokens_per_step = batch * d.seq_len
    steps = budget_tokens(d, batch) // tokens_per_step
    tau = max(5.0, d.ewa_tokens / tokens_per_step)
    warmup = max(5, round(d.warmup_tokens / tokens_per_step))
    every = d.eval_every_ref if batch == d.ref_batch else max(2, steps // d.evals_per_run)
    return {
        "model.size": size,
        "batch_size": batch,
        "optim.lr": lr,
        "total_steps": steps,
        "schedule.warmup_steps": warmup,
        "ewa_decay": round(1 - 1 / tau, 4),
        "eval_every": every,
    }


def check(d: Design) -> Design:
    """The design's own rules (one-line errors naming the field)."""
    if list(d.batch_sizes) != sorted(set(d.batch_sizes)) or len(d.batch_sizes) < 3:
        raise ValueError("batch_sizes: need >= 3 distinct sizes in increasing order")
    step_tokens = d.ref_batch * d.seq_len * d.eval_every_ref
    for dd in d.data_sizes:
        if dd % step_tokens:
            raise ValueError(
                f"data_sizes: {dd} is not a multiple of B_ref·seq_len·eval_every_ref = "
                f"{step_tokens}; the target must be read at an eval step"
            )
    missing = [s for s in d.sizes if s not in d.base_lr]
    if missing:
        raise ValueError(f"base_lr: no LR centre for sizes {missing}")
    return d


def sweep(d: Design) -> SweepSpec:
    check(d)
    points = [
        trial_point(d, n, b, lr) for n in d.sizes for b in d.batch_sizes for lr in lrs(d, n, b)
    ]
    points.sort(key=lambda p: -p["total_steps"] * p["batch_size"])  # longest runs start first
    return SweepSpec(name=d.name, base=d.base, run=d.run, points=points)


# ---------------------------------------------------------------- presets

QUICK = Design(
    name="critical_batch",
    sizes=("50K", "150K"),
    data_sizes=(320_000, 640_000, 1_280_000),  # 1250, 2500, 5000 steps at B_ref = 4
    batch_sizes=(4, 8, 16, 32, 64, 128),
    base_lr={"50K": 1e-2, "150K": 3e-3},  # pilot: best LR at B >= 16 (constant LR, AdamW)
    noise_batch=64,  # B_simple from (32, 64)-sequence gradients; at B_ref = 4 it is pure noise
    base=TrialSpec(
        model=ModelSpec("150K"),
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("constant", 10),
        data=DataSpec("pcfg"),
        seq_len=64,
        eval_batch_size=64,
    ),
    run=RunConfig(noise_every=5, cpus_per_worker=1.0, device="cpu"),
)

CLUSTER = Design(
    name="critical_batch_cluster",
    sizes=("20M", "50M", "124M"),
    data_sizes=(262_144_000, 524_288_000, 1_048_576_000),  # 2^18·1000·(1, 2, 4) tokens
    batch_sizes=(32, 64, 128, 256, 512, 1024, 2048),
    base_lr={"20M": 3e-3, "50M": 2e-3, "124M": 1.5e-3},
    lr_b0=256,
    knee=1024.0,
    warmup_tokens=20_000_000,
    ewa_tokens=5_000_000,
    eval_every_ref=500,
    evals_per_run=100,
    noise_batch=512,
    base=TrialSpec(
        model=ModelSpec("124M"),
        optim=OptimSpec(lr=1.5e-3),
        schedule=ScheduleSpec("constant", 100),
        # A nanoGPT-style uint16 token file (e.g. FineWeb with the GPT-2 tokenizer) on the
        # cluster's shared file system; edit the path for your cluster.
        data=DataSpec("tokens", params={"path": "/data/fineweb10B/train.bin", "vocab_size": 50304}),
        seq_len=512,
        eval_batch_size=256,
        precision="bf16",
    ),
    run=RunConfig(micro_batch_size=32, noise_every=20, cpus_per_worker=8.0, gpus_per_worker=1.0),
)

DESIGNS = {d.name: d for d in (QUICK, CLUSTER)}
PRESETS = {"quick": sweep(QUICK), "cluster": sweep(CLUSTER)}
SPEC = PRESETS["quick"]


def after(root: Path) -> None:
    """CBS analysis of the finished sweep: per-D tables, CBS fits, summary, figures."""
    from scalelab import files

    name = files.read_json(Path(root) / "study.json")["name"]
    analyse(Path(root), DESIGNS.get(name, replace(QUICK, name=name)))


def analyse(root: Path, d: Design, plots: bool = True):
    """scalelaws.critical_batch.study.analyse on this design's trials: writes root/cbs/{runs,curves}.parquet,
    CBS.json + cbs.png (EWA loss), CBS_raw.json (raw eval loss), CBS.md and cbs_study.png;
    returns the EWA-loss CBSResult."""
    from scalelab.sweep import expand
    from scalelaws.critical_batch.study import analyse as analyse_cbs

    names = [t.name for t in expand(sweep(d))]  # this design only (old trial folders may linger)
    return analyse_cbs(
        root,
        names,
        data_sizes=d.data_sizes,
        batch_sizes=d.batch_sizes,
        seq_len=d.seq_len,
        noise_batch=d.noise_batch or d.ref_batch,
        plots=plots,
    )


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
