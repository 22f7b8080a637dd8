"""Hyperparameter scaling laws: the optimal peak LR η* and batch size B* as functions of model
size N and training tokens D, on the synthetic PCFG language (issue 28; DeepSeek LLM 2024,
arXiv 2401.02954; Step Law, Li et al. 2025, arXiv 2503.04715; Power Lines, Bergsma et al.
2025, arXiv 2505.13738; docs/hparams.md, docs/laws.md §9).

Design. Every (shape, batch B, peak LR η) trains one WSD run per token horizon D: the same
linear warmup (5% of the shortest horizon's steps at that B) and peak, then a linear cooldown
to 0 over the last 20% of each run's own steps (Hägele et al. 2024, arXiv 2405.18392). The
horizons of one (shape, B, η) therefore agree up to the shorter ones' cooldowns, and the
platform trains that stretch once (docs/training.md, "Shared prefixes"): each shorter horizon
forks from the longest one's run a step after its own cooldown starts. The LR grid of each
(shape, B) is an octave ladder of 5 rungs centred on lr_ref·(d/32)^-1·(B/4)^0.5 (AdamW with
a width-scaled LR, the centre growing like √B), so it brackets the optimum, which moves with
both. Batch sizes are in sequences of 64 tokens; the fit reads B in tokens per step
(scalelaws.study.hparams.study_runs). AdamW (0.9, 0.95), weight decay 0.1, clip 1, seed 0,
final eval loss on a fixed held-out batch of 256 × 64 tokens.

after(root): the cell-by-cell quadratic and its power laws (scalelaws.fit_hparams, window
`fit_window`), η* and B* predicted at a shape outside the grid (follow_up_shape) at
follow_up_tokens, rounded to a runnable point (B an even number of whole sequences, so B/2 is
whole; η to 3 significant figures), and a follow-up study: that point and its 3×3
neighbourhood (η × ½, 1, 2; B × ½, 1, 2) at 5 seeds (init and data order: `seed` =
`data.seed`), scored by the paired differences of the proposal and each neighbour (same seed,
scalelaws.paired_differences, 95% t-intervals) and by whether the proposal's mean loss lies
within 0.5% of the neighbourhood's best. Writes ROOT/report.md, ROOT/hparams.json (the fit),
ROOT/hparams.png, ROOT/follow_up.json, ROOT/paired.json; the follow-up lands in
results/<study>_follow_up.

    scalelab run experiments/hparams.py --no-wandb                    # quick (2 CPU cores)
    scalelab run experiments/hparams.py --preset cluster --no-wandb   # GPUs (declared, not run)
    scalelab fit hparams --runs results/hparams                       # the fit alone

Pilots (2 shared CPU cores, 2 one-core trials at a time, other work on the machine; seed 0;
2026-12-06) chose the grid. WSD as above, octave LR ladders, horizons 2^18 and 2^20 tokens.

Step time (ms per update, trunks at D = 2^20; 2 layers, head_dim 8):

    shape (N non-emb)   B=1   B=2   B=4   B=8   B=16  B=32  B=64
    d16 (6.2K)           -    3.4   5.6  11.2  12.6  15.7  40.2
    d32 (24.7K)         5.6   6.9   6.4  11.4  20.0  26.2  63.7
    d48 (55.8K)          -     -   20.7  28.8  35.6    -  145

Best final eval loss per (shape, D, B) over the LRs tried (best LR; * = at the ladder's end):

    shape  D      B=1           B=2           B=4           B=8           B=16          B=32          B=64
    d16    2^18   -             .626 (7.1e-3) .647 (1e-2)   .650 (2.8e-2) .692 (2e-2)   .731 (1.4e-2) .861 (1e-2)
    d16    2^20   -             .572 (1.4e-2*) .569 (1e-2)  .581 (2.8e-2) .575 (2e-2)   .626 (1.4e-2) .660 (1e-2)
    d32    2^18   .600 (3.5e-3) .583 (3.5e-3) .597 (5e-3)   .637 (7.1e-3) .645 (1e-2)   .697 (1.4e-2) .770 (1e-2)
    d32    2^20   .521 (1.8e-3) .520 (3.5e-3) .534 (2e-2*)  .545 (3.5e-3) .548 (1e-2)   .569 (1.4e-2) .599 (1e-2)
    d48    2^20   -             -             .510 (1.3e-3*) .518 (5e-3*) .583 (2e-2*)  -             .601 (2.5e-3*)

What they say. (1) At fixed tokens the loss falls with the batch down to 1-2 sequences of 64
tokens: B* is 128-256 tokens here, far below the CBS study's 9-16 sequences (that is the
step-efficiency knee at constant LR, not the loss-optimal batch at fixed D), and it grows
with D for d16 (B = 2 best at 2^18, B = 4 at 2^20). A batch grid from 4 sequences up (the
first pilot) put B* on its lower edge in every cell, so the grid runs 1, 2, 4, 8 sequences;
each halving of B doubles the steps, and at these sizes an update costs 3-7 ms whatever its
batch, so the horizons are 2^17-2^19 tokens to fit the budget. (2) The best LR rises with B
(d32 at 2^18: 3.5e-3 at B = 2, 5e-3 at 4, 7.1e-3 at 8, 1e-2 at 16, 1.4e-2 at 32) and falls
with width (d16 about 2× d32 at B <= 8; d48's two LRs at B = 4 and 8 favoured the lower),
hence the centre's (d/32)^-1·(B/4)^0.5.
(3) Seed noise: seed 1 against seed 0 at four d32 points moved the final loss by +0.015,
-0.003, +0.008, +0.016 (sd of one run ≈ 0.008 nats, 1.5% of the loss), as large as the loss
differences near the optimum. The cell fit's default window (the points within 2% of the best
loss, at least 12) then holds mostly noise, so the study fits within fit_window = 10%.

Measured (quick, 2 shared CPU cores, 2026-12-06). From a fresh clone, `scalelab run
experiments/hparams.py --no-wandb` took 25 min 27 s end to end: sweep 1006 s (first trial
start to last end), fit 2 s, follow-up 493 s (45 runs), while another study's two trials
shared the cores for all but a minute of it. A first run (3 follow-up seeds; the same other
study during most of its sweep) took 15 min 17 s and 5 min 5 s (27 runs); its 177 final losses and the 27 follow-up runs the two share are
bit-identical to the fresh clone's.

- Sweep: 180 runs, 177 completed, 3 diverged (d24, B = 4, η = 2.67e-2, at step 23, and the two
  horizons forked from it). Trained 262,510 of the 399,685 updates the runs cost from scratch
  (66%).
- Grid: the best run of a cell is at B = 1 in 5 of the 9 cells, B = 2 in 3, B = 4 in 1; the
  best LR of a (N, D, B) is inside its ladder in 34 of 36.
- Fit (10% window): η* and B* interior (stationary) in 6 of 9 cells (3 of 9 with the default
  2% window); not convex in 3 (d16 at 2^18 and 2^19, d32 at 2^17: the loss still falls at
  B = 1). Located: B* = 1.1-1.7 sequences (69-105 tokens per step) in 5 cells, 4.0 at (14K,
  2^17); η* = 4.2e-3 to 1.8e-2. The laws are not resolved (NON_IDENTIFIABLE): η* ∝
  N^+0.46 [-1.50, +2.41]·D^-0.68 [-2.28, +0.92], B* ∝ N^+0.26 [-1.73, +2.26]·D^-0.34 [-1.97,
  +1.29] (95%, 6 cells).
- Proposal at d40 (N = 38.6K, 1.56× the largest size), D = 2^18: η* = 9.4e-3 (90% [1.3e-3,
  6.8e-2]), B* = 2.1 sequences (90% [0.28, 15.7]); run at η = 9.42e-3, B = 2.
- Follow-up, 5 seeds: the proposal 0.6151 ± 0.0190 (sd over seeds); the best point is
  η×½ B×1 (η = 4.71e-3, B = 2) at 0.5908 ± 0.0130, so the proposal is 4.1% above the
  neighbourhood's best, not within 0.5%. Neighbour − proposal, paired by seed (95%): the
  three η×2 points worse by +0.046 to +0.095 (intervals exclude 0), η×½ B×2 better by -0.017
  [-0.031, -0.003], the other four not separated. η* was over-predicted about 2× (the N
  exponent's sign is noise), and the fit's predicted penalties of doubling η (0.006-0.019
  nats) are 5-9× smaller than the measured ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

Shape = tuple[int, int, int]  # (d_model, n_layers, n_heads)
FACTORS = (0.5, 1.0, 2.0)  # the follow-up's neighbourhood: η × f, B × f


@dataclass(frozen=True)
class Design:
    """A preset: the grid (shapes × horizons × batch sizes × LRs), the schedule rule and the
    follow-up. Units: tokens for horizons, sequences of seq_len tokens for batch sizes."""

    name: str  # study name: results/<name>/
    shapes: tuple[Shape, ...]  # model shapes, smallest first
    horizons: tuple[int, ...]  # D: training tokens of a run, increasing; each (shape, B, η)
    # trains them as WSD runs that agree up to the shorter ones' cooldowns (shared prefixes)
    batch_sizes: tuple[int, ...]  # sequences per optimizer step, increasing
    lr_ref: float  # LR centre at (ref_width, ref_batch)
    lr_steps: tuple[int, ...] = (-2, -1, 0, 1, 2)  # the LR grid: centre · lr_ratio^k
    lr_ratio: float = 2.0  # ladder step (2: octaves, √2: half octaves)
    lr_width_exp: float = 0.0  # centre ∝ (d_model / ref_width)^-lr_width_exp
    lr_batch_exp: float = 0.0  # centre ∝ (batch / ref_batch)^lr_batch_exp
    ref_width: int = 32  # d_model of the LR centre
    ref_batch: int = 4  # batch (sequences) of the LR centre
    warmup_frac: float = 0.05  # linear warmup: this share of the SHORTEST horizon's steps ...
    min_warmup: int = 5  # ... and at least this many steps (the same for every horizon)
    cooldown_frac: float = 0.2  # linear decay over the last share of each run's own steps
    final_lr: float = 0.0  # the cooldown's end (0: to zero, Hägele et al. 2024)
    # follow-up: η* and B* predicted at (follow_up_shape, follow_up_tokens), off the grid,
    # trained with its 3×3 neighbourhood (η, B × ½, 1, 2) at each seed
    follow_up_shape: Shape | None = None  # None: the largest shape
    follow_up_tokens: int = 0  # 0: 2 × the longest horizon
    follow_up_seeds: tuple[int, ...] = (0, 1, 2)
    follow_up: bool = True
    tolerance: float = 0.005  # "near-optimal": within this share of the neighbourhood's best
    fit_window: float = 0.1  # each cell's quadratic: runs within this share of its best loss
    n_boot: int = 200  # bootstrap resamples per cell
    base: TrialSpec = field(default_factory=TrialSpec)
    run: RunConfig = field(default_factory=RunConfig)
    notes: str = field(default="", compare=False)

    @property
    def seq_len(self) -> int:
        return self.base.seq_len

    @property
    def target_shape(self) -> Shape:
        return self.follow_up_shape or self.shapes[-1]

    @property
    def target_tokens(self) -> int:
        return self.follow_up_tokens or 2 * max(self.horizons)

    def lrs(self, shape: Shape, batch: int) -> list[float]:
        """The LR grid at (shape, B): lr_steps rungs of the ladder around the centre."""
        c = self.lr_ref * (shape[0] / self.ref_width) ** -self.lr_width_exp
        c *= (batch / self.ref_batch) ** self.lr_batch_exp
        return [_sig(c * self.lr_ratio**k) for k in self.lr_steps]

    def steps(self, tokens: int, batch: int) -> int:
        return tokens // (batch * self.seq_len)

    def warmup(self, batch: int) -> int:
        """Warmup steps at batch B, the same for every horizon (so they share their prefix)."""
        short = self.steps(min(self.horizons), batch)
        return max(self.min_warmup, round(self.warmup_frac * short))

    def schedule(self, batch: int) -> ScheduleSpec:
        params = {"decay_frac": self.cooldown_frac, "shape": "linear", "final_lr": self.final_lr}
        return ScheduleSpec("wsd", self.warmup(batch), params)

    def point(self, shape: Shape, batch: int, lr: float, tokens: int) -> dict[str, Any]:
        d, n_layers, n_heads = shape
        return {
            "model.d_model": d,
            "model.n_layers": n_layers,
            "model.n_heads": n_heads,
            "batch_size": batch,
            "optim.lr": lr,
            "tokens": tokens,
            "schedule": self.schedule(batch),
        }


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def check(d: Design) -> Design:
    """The design's own rules; a one-line ValueError naming the field."""
    for f in ("shapes", "horizons", "batch_sizes", "lr_steps"):
        v = list(getattr(d, f))
        if not v or len(v) != len(set(v)) or v != sorted(v):
            raise ValueError(f"{f}: must be non-empty, distinct and increasing, got {v}")
    for f, need in (("shapes", 2), ("horizons", 2), ("batch_sizes", 3), ("lr_steps", 3)):
        if len(getattr(d, f)) < need:
            raise ValueError(f"{f}: need at least {need} values for the fit")
    for s in d.shapes + ((d.follow_up_shape,) if d.follow_up_shape else ()):
        if len(s) != 3 or s[0] % s[2] or (s[0] // s[2]) % 2:
            raise ValueError(f"shapes: {s} must be (d_model, n_layers, n_heads), even head_dim")
    step = max(d.batch_sizes) * d.seq_len
    bad = [t for t in d.horizons if t % step]
    if bad:
        raise ValueError(
            f"horizons: {bad[0]} is not a multiple of max(batch_sizes)·seq_len = {step} "
            "(every batch size must train exactly D tokens)"
        )
    if not 0 < d.cooldown_frac < 1:
        raise ValueError(f"cooldown_frac: must lie in (0, 1), got {d.cooldown_frac}")
    if not 0 <= d.warmup_frac < 1 - d.cooldown_frac:
        raise ValueError(f"warmup_frac: must lie in [0, 1 - cooldown_frac), got {d.warmup_frac}")
    if not (math.isfinite(d.lr_ref) and d.lr_ref > 0):
        raise ValueError(f"lr_ref: must be a positive number, got {d.lr_ref}")
    if not d.lr_ratio > 1:
        raise ValueError(f"lr_ratio: must be > 1, got {d.lr_ratio}")
    if not 0 <= d.final_lr < d.lr_ref * d.lr_ratio ** min(d.lr_steps):
        raise ValueError(f"final_lr: must be >= 0 and below the smallest LR, got {d.final_lr}")
    for b in d.batch_sizes:
        short = d.steps(min(d.horizons), b)
        if d.warmup(b) >= short - round(d.cooldown_frac * short):
            raise ValueError(
                f"batch_sizes: at B = {b} the shortest horizon has {short} steps, too few for "
                f"{d.warmup(b)} warmup steps before its cooldown"
            )
    if d.follow_up and len(d.follow_up_seeds) < 2:
        raise ValueError("follow_up_seeds: need >= 2 seeds for paired differences")
    if d.follow_up and d.target_shape in d.shapes and d.target_tokens in d.horizons:
        raise ValueError(
            "follow_up_shape: the follow-up (shape, tokens) is a grid cell; put the shape or the "
            "tokens outside the grid"
        )
    for f in ("tolerance", "fit_window"):
        if not 0 < getattr(d, f) < 1:
            raise ValueError(f"{f}: must lie in (0, 1), got {getattr(d, f)}")
    return d


def sweep(d: Design) -> SweepSpec:
    """Every (shape, B, η, D) as a grid point; the largest shapes and smallest batches (the
    most steps) first, the longest horizon of each (shape, B, η) first (it trains the prefix)."""
    check(d)
    pts = [
        d.point(s, b, lr, t)
        for s in reversed(d.shapes)
        for b in d.batch_sizes
        for lr in d.lrs(s, b)
        for t in reversed(d.horizons)
    ]
    return SweepSpec(name=d.name, base=d.base, run=d.run, points=pts)


# --------------------------------------------------------------------------- model sizes


@cache
def _vocab(name: str, seed: int, params: tuple) -> int:
    from scalelab import data

    return data.build(name, seed=seed, **dict(params)).vocab_size


def params_of(d: Design, shape: Shape) -> int:
    """Non-embedding parameters of `shape` (the runs table's `params`, the fit's N)."""
    from scalelab.model import args_from_spec, param_counts

    b = d.base
    spec = ModelSpec(size="", d_model=shape[0], n_layers=shape[1], n_heads=shape[2])
    vocab = b.model.vocab_size or _vocab(
        b.data.name, b.data.seed, tuple(sorted(b.data.params.items()))
    )
    return param_counts(args_from_spec(spec, vocab, b.seq_len))["non_embedding"]


# --------------------------------------------------------------------------- presets

BASE = TrialSpec(
    model=ModelSpec(size=""),
    optim=OptimSpec(lr=3e-3),
    data=DataSpec("pcfg"),  # default grammar: 6 tokens, entropy rate ≈ 0.374 nats/token
    batch_size=4,  # sequences per step
    seq_len=64,
    eval_batch_size=256,  # fixed held-out batch: 16,384 tokens
)
# one 1-core trial per core; one eval, at each run's last step (final_eval_loss)
RUN = RunConfig(eval_every=100_000, log_every=50, noise_every=0, cpus_per_worker=1, device="cpu")

QUICK = Design(
    name="hparams",
    shapes=((16, 2, 2), (24, 2, 3), (32, 2, 4)),  # N = 6.2K, 14.0K, 24.7K non-embedding
    horizons=(1 << 17, 1 << 18, 1 << 19),  # 131K, 262K, 524K tokens
    batch_sizes=(1, 2, 4, 8),  # 64 to 512 tokens per step
    lr_ref=5e-3,  # centre at d = 32, B = 4 (pilot); × (d/32)^-1 · (B/4)^0.5
    lr_width_exp=1.0,
    lr_batch_exp=0.5,
    follow_up_shape=(40, 2, 5),  # N = 38.6K: 1.56× the largest size of the grid
    follow_up_tokens=1 << 18,
    # 5 seeds: the first run's 3 seeds scattered by 0.004-0.038 nats (sd) per point
    follow_up_seeds=(0, 1, 2, 3, 4),
    base=BASE,
    run=RUN,
)

CLUSTER = Design(
    name="hparams_cluster",
    shapes=((256, 4, 4), (384, 6, 6), (512, 8, 8)),  # 3.2M, 10.6M, 25.2M non-embedding
    horizons=(1 << 27, 1 << 28, 1 << 29),  # 134M-537M tokens (5-40 tokens per parameter)
    batch_sizes=(16, 32, 64, 128, 256),  # sequences of 256 tokens: 4K-64K tokens per step
    lr_ref=3e-3,
    lr_width_exp=1.0,
    lr_batch_exp=0.5,
    ref_width=256,
    ref_batch=64,
    follow_up_shape=(640, 10, 10),  # 49M
    follow_up_tokens=1 << 28,
    base=TrialSpec(
        model=ModelSpec(size="", vocab_size=32),  # the grammar's 19 tokens, padded
        optim=OptimSpec(lr=1e-3),
        # the harder grammar of the isoflop cluster preset; a 2^30-token stream
        data=DataSpec(
            "pcfg",
            params={
                "depth": 5,
                "n_symbols": 6,
                "n_rules": 3,
                "n_terminals": 16,
                "n_tokens": 1 << 30,
            },
        ),  # fmt: skip
        batch_size=64,
        seq_len=256,
        eval_batch_size=512,
        precision="bf16",
    ),
    run=RunConfig(
        eval_every=100_000,
        log_every=100,
        noise_every=0,
        gpus_per_worker=1,
        cpus_per_worker=4,
        device="cuda",
    ),
    notes="declared, not run: no pilot on GPUs; look at the grid optima table and re-centre",
)

DESIGNS = {d.name: d for d in (QUICK, CLUSTER)}
PRESETS = {"quick": sweep(QUICK), "cluster": sweep(CLUSTER)}
SPEC = PRESETS["quick"]


# --------------------------------------------------------------------------- analysis


def design_of(root: Path) -> Design:
    """The design whose study name is in ROOT/study.json."""
    from scalelab import files

    name = files.read_json(Path(root) / "study.json")["name"]
    if name not in DESIGNS:
        raise ValueError(f"{root}: study {name!r} is not one of {', '.join(DESIGNS)}")
    return DESIGNS[name]


def study_runs(root: Path):
    """The fit's input (scalelaws.study.hparams.study_runs): the completed runs with a finite
    final eval loss, N = params (non-embedding), D = tokens, η = lr (peak), B = batch_tokens
    (batch_size·seq_len), seed; `columns` names them for fit_hparams."""
    import scalelaws as sl
    from scalelaws.study.hparams import study_runs as runs_of

    return runs_of(sl.load_study(root))


def grid_optima(frame):
    """The grid's own answer, no fit: per (N, D, B) the best LR and whether it lies at an end
    of the LR ladder; per (N, D) the best (B, LR) and whether B lies at an end of the batch
    grid."""
    import polars as pl

    loss = "final_eval_loss"
    keys = ["params", "tokens", "batch_size"]
    by_b = (
        frame.sort(loss)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("lr").first().alias("best_lr"),
            pl.col(loss).first().alias("best_loss"),
            pl.col("lr").min().alias("lr_min"),
            pl.col("lr").max().alias("lr_max"),
        )
        .with_columns(
            lr_edge=(pl.col("best_lr") == pl.col("lr_min"))
            | (pl.col("best_lr") == pl.col("lr_max"))
        )
        .sort(keys)
    )
    bmin, bmax = frame["batch_size"].min(), frame["batch_size"].max()
    by_cell = (
        by_b.sort("best_loss")
        .group_by(["params", "tokens"], maintain_order=True)
        .agg(
            pl.col("batch_size").first().alias("best_batch"),
            pl.col("best_lr").first(),
            pl.col("best_loss").first(),
            pl.col("lr_edge").sum().alias("lr_edges"),
            pl.len().alias("batches"),
        )
        .with_columns(batch_edge=pl.col("best_batch").is_in([bmin, bmax]))
        .sort(["params", "tokens"])
    )
    return by_b, by_cell


def fit(d: Design, runs, window: float | None = None):
    """scalelaws.fit_hparams on the study's runs, cells fitted within `window` (the design's
    fit_window unless given)."""
    import scalelaws as sl

    w = d.fit_window if window is None else window
    return sl.fit_hparams(runs.frame, **runs.columns, n_boot=d.n_boot, window=w)


def propose(d: Design, hp_fit, level: float = 0.9) -> dict[str, Any]:
    """η* and B* predicted at (target shape, target tokens) with `level` prediction
    intervals, and the runnable point: B an even number of whole sequences (B/2 is whole),
    at least 2; η to 3 significant figures. Each neighbourhood point with the fit's predicted
    loss penalty over the optimum (HparamsFit.penalty)."""
    n, tokens, seq = params_of(d, d.target_shape), d.target_tokens, d.seq_len
    p = hp_fit.predict(n, tokens, level)
    prop = {
        "shape": list(d.target_shape), "params": n, "tokens": tokens, "level": level,
        "lr_pred": p.lr, "lr_interval": list(p.intervals["lr"]),
        "batch_pred": p.batch, "batch_interval": list(p.intervals["batch"]),  # tokens/step
        "form": p.info.get("form"), "diagnostics": [x.line() for x in p.diagnostics],
    }  # fmt: skip
    if not (math.isfinite(p.lr) and math.isfinite(p.batch)):
        return prop
    prop["lr"], prop["batch_seqs"] = _sig(p.lr), max(2, 2 * round(p.batch / seq / 2))
    prop["neighbourhood"] = neighbourhood(d, prop["lr"], prop["batch_seqs"])
    for row in prop["neighbourhood"]:
        pt = row["point"]
        pen = hp_fit.penalty(n, tokens, pt["optim.lr"], pt["batch_size"] * seq)
        row["penalty_nats"] = pen.params["nats"]
    return prop


def neighbourhood(d: Design, lr: float, batch_seqs: int) -> list[dict[str, Any]]:
    """The 3×3 points around (lr, batch_seqs) at the target tokens
    (scalelab.sweep.lr_batch_neighbourhood), each with its role and factors."""
    from scalelab.sweep import lr_batch_neighbourhood

    pts = lr_batch_neighbourhood(lr, batch_seqs, d.target_tokens, d.seq_len, FACTORS)
    pairs = [(a, b) for a in FACTORS for b in FACTORS]
    return [
        {"role": role(f_lr, f_b), "f_lr": f_lr, "f_b": f_b, "point": pt}
        for (f_lr, f_b), pt in zip(pairs, pts, strict=True)
    ]


def role(f_lr: float, f_b: float) -> str:
    """`proposal`, or the neighbour's name: `η×0.5 B×2`."""
    return "proposal" if f_lr == f_b == 1 else f"η×{f_lr:g} B×{f_b:g}"


def follow_up_spec(d: Design, prop: dict[str, Any], root: Path) -> SweepSpec:
    """The proposal and its 3×3 neighbourhood (prop["neighbourhood"]) at the target shape and
    tokens, every point at each follow-up seed (init seed and data order: `seed` =
    `data.seed`), with the design's schedule rule."""
    dm, n_layers, n_heads = d.target_shape
    shape = {"model.d_model": dm, "model.n_layers": n_layers, "model.n_heads": n_heads}
    pts = []
    for row in prop["neighbourhood"]:
        p = shape | row["point"] | {"schedule": d.schedule(row["point"]["batch_size"])}
        pts += [p | {"seed": s, "data.seed": s} for s in d.follow_up_seeds]
    name = f"{d.name}_follow_up"
    return SweepSpec(
        name=name, base=d.base, run=d.run, points=pts, storage=str(Path(root).parent / name)
    )


def score(d: Design, prop: dict[str, Any], follow_runs) -> dict[str, Any]:
    """Per neighbourhood point the mean final loss over seeds; each neighbour against the
    proposal paired by seed (scalelaws.paired_differences: proposal − neighbour, 95%
    t-interval); is the proposal within `tolerance` of the neighbourhood's best mean loss?"""
    import polars as pl

    import scalelaws as sl

    loss = "final_eval_loss"
    done = follow_runs.filter((pl.col("status") == "completed") & pl.col(loss).is_finite())
    names = {(r["point"]["optim.lr"], r["point"]["batch_size"]): r for r in prop["neighbourhood"]}
    tagged = done.with_columns(
        pl.struct("lr", "batch_size")
        .map_elements(
            lambda r: (
                names[(r["lr"], r["batch_size"])]["role"]
                if (r["lr"], r["batch_size"]) in names
                else None
            ),
            return_dtype=pl.String,
        )
        .alias("role")
    ).filter(pl.col("role").is_not_null())
    points = (
        tagged.group_by("role", "lr", "batch_size")
        .agg(
            pl.col(loss).mean().alias("loss"),
            pl.col(loss).std().alias("sd"),
            pl.len().alias("seeds"),
        )
        .sort("lr", "batch_size")
    )
    mine = points.filter(pl.col("role") == "proposal")
    if mine.height != 1:
        raise ValueError("follow-up: no completed run of the proposal")
    best = points.sort("loss").row(0, named=True)
    gap = (mine["loss"][0] - best["loss"]) / best["loss"]
    others = tuple(r for r in points["role"].to_list() if r != "proposal")
    # paired_differences pairs the rows of each `schedule` name by seed
    frame = tagged.select(pl.col("role").alias("schedule"), "seed", "status", loss)
    paired = sl.paired_differences(
        frame, proposal="proposal", baselines=others, min_seeds=len(d.follow_up_seeds)
    )
    return {
        "points": points.to_dicts(),
        "best": best["role"],
        "best_loss": best["loss"],
        "proposal_loss": mine["loss"][0],
        "gap": gap,  # (proposal − best) / best
        "within_tolerance": bool(gap <= d.tolerance),
        "paired": paired,
        "left_out": follow_runs.height - tagged.height,
    }


def sweep_span(root: Path) -> float | None:
    """Seconds from the first trial's start to the last one's end (trial.json records)."""
    from scalelab import files

    spans = []
    for f in (Path(root) / "trials").glob("*/trial.json"):
        try:
            r = files.read_json(f)
            spans.append((r["finished_at"] - r["wall_s"], r["finished_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else None


def compute_line(runs) -> str:
    """Updates the sweep trained against the same runs from scratch (shared prefixes)."""
    import polars as pl

    fork = pl.col("fork_step").fill_null(0) if "fork_step" in runs.columns else pl.lit(0)
    own, full = runs.select(
        (pl.col("steps_done") - fork).clip(lower_bound=0).sum().alias("own"),
        pl.col("steps_done").sum().alias("full"),
    ).row(0)
    return (
        f"Trained {own:,} of the {full:,} updates that the {runs.height} runs cost from "
        f"scratch ({own / max(full, 1):.0%}; shared prefixes trained once)."
    )


# --------------------------------------------------------------------------- report


def _iv(iv, fmt: str = ".3g", scale: float = 1.0) -> str:
    if iv is None or any(v is None or not math.isfinite(v) for v in iv):
        return "-"
    return f"[{iv[0] / scale:{fmt}}, {iv[1] / scale:{fmt}}]"


def report(d: Design, runs, all_runs, hp_fit, default_fit, prop, scores, wall) -> str:
    """report.md: design, compute, grid optima, the fit per cell and its laws, the proposal,
    the follow-up and its paired differences, wall times, diagnostics."""
    s = d.seq_len
    ns = ", ".join(f"{sh} {params_of(d, sh):,}" for sh in d.shapes)
    lrs = "; ".join(
        f"{sh[0]}/{b}: {d.lrs(sh, b)[0]:.3g}-{d.lrs(sh, b)[-1]:.3g}"
        for sh in d.shapes
        for b in (d.batch_sizes[0], d.batch_sizes[-1])
    )
    lines = [
        f"# Hyperparameter study `{d.name}`",
        "",
        f"Shapes (d, L, H) and N (non-embedding): {ns}. Horizons D: "
        f"{', '.join(f'{t:,}' for t in d.horizons)} tokens. Batch sizes: "
        f"{', '.join(map(str, d.batch_sizes))} sequences of {s} tokens. LRs: {len(d.lr_steps)} "
        f"per (shape, B), ×{d.lr_ratio:g} apart (d/B: lowest-highest: {lrs}). WSD: warmup "
        f"{d.warmup_frac:g} of the shortest horizon's steps (>= {d.min_warmup}), linear "
        f"cooldown to {d.final_lr:g} over the last {d.cooldown_frac:g} of each run.",
        "",
        f"{runs.frame.height} of {all_runs.height} runs fitted"
        + ("; " + "; ".join(runs.lines()) if runs.lines() else "")
        + ". "
        + compute_line(all_runs),
        "",
    ]
    lines += _grid_lines(runs.frame)
    lines += _fit_lines(d, hp_fit, default_fit)
    if prop is not None:
        lines += _proposal_lines(d, prop)
    if scores is not None:
        lines += _follow_up_lines(d, prop, scores)
    if wall:
        lines += ["", "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()) + "."]
    diags = list(hp_fit.diagnostics)
    if scores is not None:
        diags += list(scores["paired"].diagnostics)
    lines += ["", "## Diagnostics", ""] + ([f"- {x.line()}" for x in diags] or ["- none"])
    return "\n".join(lines) + "\n"


def _grid_lines(frame) -> list[str]:
    by_b, by_cell = grid_optima(frame)
    lines = [
        "## Grid optima (the best run; no fit)",
        "",
        "| N | D | best B (seqs) | η there | loss | B at a grid end | B whose best η is at a "
        "ladder end |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in by_cell.iter_rows(named=True):
        lines.append(
            f"| {r['params']:,.0f} | {r['tokens']:,.0f} | {r['best_batch']} | "
            f"{r['best_lr']:.3g} | {r['best_loss']:.4f} | {'yes' if r['batch_edge'] else 'no'} "
            f"| {r['lr_edges']} of {r['batches']} |"
        )
    return lines


def _fit_lines(d: Design, hp_fit, default_fit) -> list[str]:
    from scalelaws.study.hparams import curvature_text

    s = d.seq_len
    lines = [
        "",
        f"## Fit per (N, D) cell: quadratic in (ln η, ln B) within {d.fit_window:.0%} of the "
        "cell's best loss; 95% bootstrap intervals",
        "",
        "| N | D | η* | η* 95% | η status | B* (seqs) | B* 95% (seqs) | B status | L* |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in hp_fit.cells:
        lines.append(
            f"| {c['params']:,.0f} | {c['tokens']:,.0f} | {c['lr_opt']:.3g} | "
            f"{_iv(c['lr_interval'])} | {c['lr_status']} | {c['batch_opt'] / s:.3g} | "
            f"{_iv(c['batch_interval'], scale=s)} | {c['batch_status']} | {c['loss_opt']:.4f} |"
        )
    located = {
        k: sum(c[f"{k}_status"] == "stationary" for c in hp_fit.cells) for k in ("lr", "batch")
    }
    lines += [
        "",
        f"Interior (stationary) optima: η* in {located['lr']} of {len(hp_fit.cells)} cells, B* "
        f"in {located['batch']}.",
    ]
    if default_fit is not None:
        dl = {k: sum(c[f"{k}_status"] == "stationary" for c in default_fit.cells)
              for k in ("lr", "batch")}  # fmt: skip
        w = default_fit.info.get("window")
        lines.append(
            f"With the library's default window ({w:.0%}): η* in {dl['lr']}, B* in "
            f"{dl['batch']} of {len(default_fit.cells)} cells."
        )
    lines += ["", "| law | exponents (95%) | r² | cells |", "|---|---|---|---|"]
    for key, law in hp_fit.laws.items():
        ex = ", ".join(
            f"{v}: {e:+.3f} {_iv(law['exponent_intervals'][v], '+.3f')}"
            for v, e in law["exponents"].items()
        )
        lines.append(f"| {key} | {ex} | {law['r2']:.3f} | {law['n']} |")
    if not hp_fit.laws:
        lines.append("| none fitted (see the diagnostics) | | | |")
    lines += ["", f"Pooled curvature: {curvature_text(hp_fit)} (δ in ln units)."]
    return lines


def _proposal_lines(d: Design, prop: dict[str, Any]) -> list[str]:
    s = d.seq_len
    pct = f"{100 * prop['level']:g}%"
    lines = [
        "",
        f"## Proposal at N = {prop['params']:,} (shape {tuple(prop['shape'])}), "
        f"D = {prop['tokens']:,} tokens",
        "",
        f"Predicted η* = {prop['lr_pred']:.3g} ({pct} {_iv(prop['lr_interval'])}), B* = "
        f"{prop['batch_pred'] / s:.3g} sequences ({pct} {_iv(prop['batch_interval'], scale=s)}; "
        f"{prop['batch_pred']:,.0f} tokens per step); forms {prop['form']}.",
    ]
    if "lr" in prop:
        lines.append(
            f"Runnable point: η = {prop['lr']:g}, B = {prop['batch_seqs']} sequences (an even "
            "number, so B/2 is whole)."
        )
    else:
        lines.append("No runnable point: the fit has no law of η* or B* (see its diagnostics).")
    return lines + [f"- {x}" for x in prop["diagnostics"]]


def _follow_up_lines(d: Design, prop: dict[str, Any], sc: dict[str, Any]) -> list[str]:
    pen = {r["role"]: r.get("penalty_nats") for r in prop["neighbourhood"]}
    paired = sc["paired"]
    comp = {c.baseline: c for c in paired.comparisons}
    pct = f"{100 * paired.level:.0f}%"
    lines = [
        "",
        f"## Follow-up: the proposal and its 3×3 neighbourhood, {len(d.follow_up_seeds)} seeds",
        "",
        "Measured final eval loss (mean ± sd over seeds); neighbour − proposal paired by seed "
        f"(same seed: same init and data order), mean with its {pct} t-interval (positive: the "
        "proposal is better); the fit's predicted penalty of the point over the optimum.",
        "",
        f"| point | η | B (seqs) | loss | seeds | neighbour − proposal | {pct} | predicted penalty |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sc["points"]:
        sd = f"{r['sd']:.4f}" if r["sd"] is not None else "-"
        c = comp.get(r["role"])
        diff = iv = "-"
        if c is not None:  # paired_differences gives proposal − neighbour
            diff = f"{-c.mean:+.4f}"
            iv = "none" if c.lo is None else f"[{-c.hi:+.4f}, {-c.lo:+.4f}]"
        p = pen.get(r["role"])
        p = f"{p:+.4f}" if p is not None and math.isfinite(p) else "-"
        lines.append(
            f"| {r['role']} | {r['lr']:.3g} | {r['batch_size']} | {r['loss']:.4f} ± {sd} | "
            f"{r['seeds']} | {diff} | {iv} | {p} |"
        )
    worse = [c.baseline for c in paired.comparisons if c.excludes_zero and c.mean < 0]
    better = [c.baseline for c in paired.comparisons if c.excludes_zero and c.mean > 0]
    verdict = "within" if sc["within_tolerance"] else "NOT within"
    lines += [
        "",
        f"Separated from the proposal at {pct}: {len(worse)} neighbour(s) worse"
        + (f" ({', '.join(worse)})" if worse else "")
        + f", {len(better)} better"
        + (f" ({', '.join(better)})" if better else "")
        + f"; {len(paired.comparisons) - len(worse) - len(better)} not separated.",
        f"Best mean loss in the neighbourhood: {sc['best']} ({sc['best_loss']:.4f}); the "
        f"proposal's {sc['proposal_loss']:.4f} is {100 * sc['gap']:.2f}% above it: {verdict} "
        f"{100 * d.tolerance:g}% of the best.",
    ]
    if sc["left_out"]:
        lines.append(f"{sc['left_out']} follow-up run(s) left out (not completed).")
    return lines


def write_outputs(root: Path, d, runs, all_runs, hp_fit, default_fit, prop, scores, wall) -> str:
    """ROOT/report.md, hparams.json (the fit), follow_up.json (the proposal and its scores),
    paired.json (the paired differences); returns the report."""
    import json

    from scalelaws.io import write_text

    root = Path(root)
    hp_fit.to_json(root / "hparams.json")
    if prop is not None:
        out = {"proposal": prop, "wall_s": wall}
        if scores is not None:
            scores["paired"].to_json(root / "paired.json")
            out["scores"] = {k: v for k, v in scores.items() if k != "paired"}
        write_text(root / "follow_up.json", json.dumps(out, indent=1, default=float) + "\n")
    text = report(d, runs, all_runs, hp_fit, default_fit, prop, scores, wall)
    write_text(root / "report.md", text)
    return text


def after(root: Path) -> None:
    """Fit, propose at the follow-up's (N, D), train the proposal and its neighbourhood at
    each seed, score it; writes ROOT/report.md and the files of the module doc."""
    import time

    import polars as pl

    from scalelab import launch
    from scalelaws.hparams.surface import WINDOW

    t0 = time.time()
    root = Path(root)
    d = design_of(root)
    runs = study_runs(root)
    all_runs = pl.read_parquet(root / "runs.parquet")
    wall = {"sweep (first trial start to last end)": sweep_span(root) or math.nan}
    hp_fit = fit(d, runs)
    default_fit = fit(d, runs, WINDOW) if d.fit_window != WINDOW else None
    wall["fit"] = time.time() - t0
    try:
        hp_fit.plot(root / "hparams.png")
    except Exception as e:  # a figure never stops the analysis
        print(f"hparams.png not drawn: {type(e).__name__}: {e}")
    prop = propose(d, hp_fit) if d.follow_up and hp_fit.laws else None
    text = write_outputs(root, d, runs, all_runs, hp_fit, default_fit, prop, None, wall)
    if prop is None or "lr" not in prop:
        print(text)
        return
    spec = follow_up_spec(d, prop, root)
    print(
        f"follow-up at N = {prop['params']:,}, D = {prop['tokens']:,}: η = {prop['lr']:g}, "
        f"B = {prop['batch_seqs']} and its neighbours, seeds {list(d.follow_up_seeds)} -> "
        f"{spec.storage}"
    )
    t1 = time.time()
    check = launch.run(spec, wandb_mode=None, show_progress=False)
    wall["follow-up sweep"] = time.time() - t1
    scores = score(d, prop, pl.read_parquet(check / "runs.parquet"))
    print(write_outputs(root, d, runs, all_runs, hp_fit, default_fit, prop, scores, wall))


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
