"""Knowledge capacity study (Allen-Zhu & Li 2024, "Physics of Language Models: Part 3.3",
arXiv 2404.05405): bits stored per parameter, and how much survives int8 / int4 rounding.

quick (default, ~15-20 min on an idle 2-core machine, two 1-core trials at a time):
  compact bioD (one person per row, docs/laws.md §3): N = 500 and 1000 people, 2-layer GPTs of width
  16 / 24 / 32 / 48 ("6K" .. "55K", 10K-68K parameters with the used embedding rows), so the
  smallest are capacity-bound (max bits 28.5K and 56K) and the largest store everything;
  bioS with N = 100 and the "6K" model (18K parameters with its 744 used embedding rows, max
  6.8K bits: far above capacity; a capacity-bound bioS model is beyond a CPU budget);
  100 and 1000 exposures.
cluster: the paper's setting on GPUs: bioS, N from 10K to 200K, GPT-2-style sizes 1M-124M,
  1000 exposures (and 100), seq_len 512.

    scalelab run experiments/capacity.py --no-wandb                     # quick
    scalelab run experiments/capacity.py --preset cluster --no-wandb
    scalelab fit capacity --runs results/capacity --out capacity.json --plot capacity.png

`after(root)` runs the fit: ROOT/capacity.json and ROOT/capacity.png.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from scalelab import data
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

LR = 2e-2  # tiny models memorise best at a high LR (6K on N=500: 1e-2 -> 1.9, 2e-2 -> 2.1 bits/P)
WARMUP_FRAC = 0.05  # linear warmup, share of the steps
FINAL_FRAC = 0.1  # cosine to 10% of the peak LR
BIOD_SEQ = 12  # compact bioD: [BOS] f m l v1..v8 [EOS] -> 12 targets per person


@cache
def _tokens_per_epoch(name: str, n: int) -> int:
    return data.build(name, n_people=n).tokens_per_epoch


def _schedule(base: TrialSpec, name: str, n: int, exposures: int, batch: int, seq_len: int):
    """Cosine with 5% warmup, sized from the steps that `exposures` gives (as sweep.py does)."""
    tokens = int(exposures * _tokens_per_epoch(name, n))
    steps = max(1, tokens // (batch * seq_len))
    lr = base.optim.lr
    return ScheduleSpec("cosine", int(WARMUP_FRAC * steps), {"final_lr": FINAL_FRAC * lr})


def points(
    base: TrialSpec,
    name: str,
    n_people: list[int],
    sizes: list[str],
    exposures: list[int],
    batch: int | None = None,
    seq_len: int | None = None,
) -> list[dict]:
    """Grid points (data, N, exposures, size) with a schedule sized for each; batch / seq_len
    only when they differ from the base."""
    b, s = batch or base.batch_size, seq_len or base.seq_len
    extra = {k: v for k, v in (("batch_size", b), ("seq_len", s)) if v != getattr(base, k)}
    return [
        {
            "data.name": name,
            "data.params.n_people": n,
            "exposures": e,
            "model.size": size,
            **extra,
            "schedule": _schedule(base, name, n, e, b, s),
        }
        for n in n_people
        for e in exposures
        for size in sizes
    ]


QUICK_BASE = TrialSpec(
    model=ModelSpec("6K"),
    optim=OptimSpec(lr=LR, beta2=0.98, weight_decay=0.1),
    data=DataSpec("biod"),
    batch_size=128,  # sequences (people) per step
    seq_len=BIOD_SEQ,
    knowledge_eval=True,  # p1/p2/p3 in fp32, int8 and int4 -> knowledge.json
)
QUICK = SweepSpec(
    name="capacity",
    base=QUICK_BASE,
    # two 1-core trials at a time on 2 cores
    run=RunConfig(eval_every=250, log_every=50, noise_every=0, cpus_per_worker=1, device="cpu"),
    points=(
        points(QUICK_BASE, "biod", [500, 1000], ["6K", "14K", "25K", "55K"], [1000, 100])
        + points(QUICK_BASE, "bios", [100], ["6K"], [1000, 100], batch=32, seq_len=64)
    ),
)

CLUSTER_BASE = TrialSpec(
    model=ModelSpec("1M"),
    optim=OptimSpec(lr=1e-3, beta2=0.98, weight_decay=0.1),
    data=DataSpec("bios"),
    batch_size=192,
    seq_len=512,
    knowledge_eval=True,
    precision="bf16",
)
CLUSTER = SweepSpec(
    name="capacity_cluster",
    base=CLUSTER_BASE,
    run=RunConfig(
        eval_every=1000, log_every=100, noise_every=0, gpus_per_worker=1, cpus_per_worker=4
    ),
    points=(
        points(
            CLUSTER_BASE, "bios", [10_000, 20_000, 50_000], ["1M", "2M", "5M", "10M", "20M"], [1000]
        )
        + points(
            CLUSTER_BASE, "bios", [100_000, 200_000], ["5M", "10M", "20M", "50M", "124M"], [1000]
        )
        + points(CLUSTER_BASE, "bios", [10_000, 50_000], ["1M", "5M", "20M"], [100])
    ),
)

PRESETS = {"quick": QUICK, "cluster": CLUSTER}
SPEC = QUICK


def after(root: Path) -> None:
    """Fit the capacity law on the finished study: ROOT/capacity.json and ROOT/capacity.png."""
    import scalelaws as sl
    from scalelaws.capacity.plots import plot_capacity_study

    res = sl.fit_capacity(root, bound_frac=0.9)
    res.to_json(root / "capacity.json")
    plot_capacity_study(
        list(res.trials), res.ratio.get("estimate"), root / "capacity.png", result=res
    )
    for g in res.groups:
        lo, hi = g["interval"] or (None, None)
        r = "-" if g["estimate"] is None else f"{g['estimate']:.3f} [{lo:.3f}, {hi:.3f}]"
        print(f"{g['exposures']:g} exposures: R = {r} bits/param")


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
