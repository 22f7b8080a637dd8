"""isoFLOP study: compute-optimal model size on the synthetic PCFG language (Hoffmann et al.
2022, arXiv 2203.15556, approaches 2 and 3; Besiroglu et al. 2024, arXiv 2404.10102).

Design. Every FLOP budget C trains a window of 5 shapes from a ladder of (d_model, n_layers,
n_heads) whose total parameter count roughly doubles per rung, each on

    D = C / flops_per_token(shape)   tokens,   flops_per_token = 6·N_total + 12·L·d·T

(PaLM's count, scalelab.model.flops_per_token: N_total includes the tied embedding, which is
also the output layer; 12·L·d·T is attention with T = seq_len). At these sizes attention adds
8-65% to 6N, so the convention matters (Porian et al. 2024, arXiv 2406.19146); the fits use
the same one: compute="flops_per_token", N = params_total, D = tokens_seen. The window of
each budget is centred on its optimum from a pilot, so every slice brackets its minimum.
Constant across the study: batch 16 × 64 tokens, AdamW peak LR 3e-3, cosine to 10% with 5%
warmup (sized per trial), seed 0, final eval loss on a fixed 256 × 64-token held-out batch.

after(root): approach 2 (parabola per budget) and approach 3 (loss surface) side by side,
proposals at 4× the largest budget, and a follow-up sweep at that budget: the ladder shape
nearest the approach-3 N* and the rungs just below and above it. Writes ROOT/isoflop.md,
ROOT/isoflop.json and ROOT/isoflop.png; the follow-up lands in results/<study>_follow_up.

Approach 3 holds E at the grammar's entropy rate (the known floor; a free-E fit is kept
beside it), and the follow-up is scored against both with 90% prediction intervals.
Measured (quick, 2 shared cores, 2026-12-06; docs/chinchilla.md): N* ∝ C^0.59 (approach 3,
E held, 95% [0.47, 0.74]) and C^0.65 (approach 2, [0.25, 0.85]); the proposed 111K shape
beat its neighbours at 4.8e12 FLOPs by 0.0011 nats only; the held-E fit's intervals covered
all three measured losses (over-predicting by 0.006-0.018), the free-E fit's none (E = 0.076,
far below the entropy rate 0.374; under-predicting by 0.034-0.040).

    scalelab run experiments/isoflop.py --no-wandb                    # quick (2 CPU cores)
    scalelab run experiments/isoflop.py --preset cluster --no-wandb   # GPUs (declared, not run)
    scalelab run experiments/isoflop.py --preset wsd --no-wandb       # WSD: budgets as cooldowns
    scalelab fit chinchilla --runs results/isoflop --compute flops_per_token --fix-e 0.3739 --out FIT.json
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

Shape = tuple[int, int, int]  # (d_model, n_layers, n_heads)

# One shape family: head_dim 8 throughout, d/L from 8 to 24; total parameters on the PCFG's
# 6-token vocabulary in the comments (×~2 per rung). A first run with mixed head counts (2 to 5
# heads of 8-16) gave slices that were not smooth in N: at 6e11 FLOPs, d32-L2 with 2 heads of
# 16 ended at 0.574 where 4 heads of 8 (pilot) reached 0.517.
LADDER: tuple[Shape, ...] = (
    (16, 1, 2),  # 3.2K
    (16, 2, 2),  # 6.3K
    (24, 2, 3),  # 14.1K
    (32, 2, 4),  # 24.9K
    (40, 3, 5),  # 58.1K
    (48, 4, 6),  # 111K
    (64, 4, 8),  # 198K
    (80, 5, 10),  # 385K
    (112, 5, 14),  # 754K
    (144, 6, 18),  # 1.50M
)
COMPUTE = "flops_per_token"  # the FLOPs convention of the design and of both fits
FIT_COLUMNS = {
    "params_col": "params_total",
    "tokens_col": "tokens_seen",
    "loss_col": "final_eval_loss",
    "flops_col": "flops_per_token",
}


@dataclass(frozen=True)
class Design:
    """A preset: the sweep's constants, the ladder, and per FLOP budget its ladder window."""

    name: str
    base: TrialSpec
    run: RunConfig
    ladder: tuple[Shape, ...]
    windows: dict[float, tuple[int, ...]]  # budget (FLOPs) -> ladder indices
    follow_up_factor: float = 4.0  # follow-up budget = factor × the largest budget
    warmup_frac: float = 0.05  # linear warmup, share of each trial's steps
    final_div: float = 10.0  # cosine floor = peak LR / final_div
    # "cosine": each trial decays over its own steps. "wsd": warmup sized on the shape's
    # shortest run, then the peak LR, then a linear cooldown over the last cooldown_frac of
    # each trial's steps: every budget of a shape is a cooldown branching from its longest
    # run (Hägele et al. 2024, arXiv 2405.18392), trained once up to there (shared prefixes)
    schedule: str = "cosine"
    cooldown_frac: float = 0.2
    follow_up: bool = True  # train the proposal and its neighbours at follow_up_budget
    n_boot: int = 1000  # approach-3 bootstrap resamples
    notes: str = field(default="", compare=False)

    @property
    def budgets(self) -> list[float]:
        return sorted(self.windows)

    @property
    def follow_up_budget(self) -> float:
        return self.follow_up_factor * max(self.windows)

    def sweep(self) -> SweepSpec:
        pts = [self.point(self.ladder[i], c) for c in self.budgets for i in self.windows[c]]
        return SweepSpec(name=self.name, base=self.base, run=self.run, points=pts)

    def point(self, shape: Shape, budget: float) -> dict[str, Any]:
        """Grid point of `shape` at `budget`: D = C / flops_per_token(shape), rounded down."""
        d, n_layers, n_heads = shape
        sized_on = [budget]  # the warmup is a share of this run's steps ...
        if self.schedule == "wsd":  # ... or, with WSD, of the shape's shortest run in the sweep
            i = self.ladder.index(shape)
            sized_on = [c for c, w in self.windows.items() if i in w] or sized_on
        warmup = max(1, round(self.warmup_frac * min(self.steps(shape, c) for c in sized_on)))
        floor = self.base.optim.lr / self.final_div
        if self.schedule == "wsd":
            params = {"decay_frac": self.cooldown_frac, "shape": "linear", "final_lr": floor}
            schedule = ScheduleSpec("wsd", warmup, params)
        else:
            schedule = ScheduleSpec("cosine", warmup, {"final_lr": floor})
        return {
            "model.d_model": d,
            "model.n_layers": n_layers,
            "model.n_heads": n_heads,
            "tokens": self.tokens(shape, budget),
            "schedule": schedule,
        }

    def tokens(self, shape: Shape, budget: float) -> int:
        return int(budget // flops_per_token(self, shape))

    def steps(self, shape: Shape, budget: float) -> int:
        """Optimizer steps of `shape` at `budget`, rounded down as sweep.py rounds."""
        return self.tokens(shape, budget) // (self.base.batch_size * self.base.seq_len)


@cache
def _vocab(name: str, seed: int, params: tuple) -> int:
    from scalelab import data

    return data.build(name, seed=seed, **dict(params)).vocab_size


def model_args(design: Design, shape: Shape):
    """The ModelArgs the trainer builds for `shape` (scalelab.model.args_from_spec)."""
    from scalelab.model import args_from_spec

    b = design.base
    d, n_layers, n_heads = shape
    spec = ModelSpec(size="", d_model=d, n_layers=n_layers, n_heads=n_heads)
    vocab = b.model.vocab_size or _vocab(
        b.data.name, b.data.seed, tuple(sorted(b.data.params.items()))
    )
    return args_from_spec(spec, vocab, b.seq_len)


def flops_per_token(design: Design, shape: Shape) -> int:
    """6·N_total + 12·L·d·T of the shape (scalelab.model.flops_per_token)."""
    from scalelab import model

    return model.flops_per_token(model_args(design, shape))


def params_total(design: Design, shape: Shape) -> int:
    from scalelab import model

    return model.param_counts(model_args(design, shape))["total"]


# --------------------------------------------------------------------------- presets

QUICK = Design(
    name="isoflop",
    base=TrialSpec(
        model=ModelSpec(size=""),
        optim=OptimSpec(lr=3e-3),
        data=DataSpec("pcfg"),  # default grammar: 6 tokens, entropy rate ≈ 0.374 nats/token
        batch_size=16,  # sequences per step
        seq_len=64,  # 1,024 tokens per step
        eval_batch_size=256,  # fixed held-out batch: 16,384 tokens
    ),
    # one 1-core trial per core; evals: a few per trial and the last step (final_eval_loss)
    run=RunConfig(eval_every=500, log_every=50, noise_every=0, cpus_per_worker=1, device="cpu"),
    ladder=LADDER,
    # pilot (one seed): minima near 9K, 50K, 110K at 1.5e11, 6e11, 1.2e12 FLOPs
    windows={
        1.5e11: (0, 1, 2, 3, 4),  # 3.2K-58K
        3e11: (1, 2, 3, 4, 5),  # 6.3K-111K
        6e11: (2, 3, 4, 5, 6),  # 14K-198K
        1.2e12: (3, 4, 5, 6, 7),  # 25K-385K
    },
)

CLUSTER = Design(
    name="isoflop_cluster",
    base=TrialSpec(
        model=ModelSpec(size="", vocab_size=32),  # the grammar's 19 tokens, padded
        optim=OptimSpec(lr=1e-3),
        # a harder grammar than the quick one; a 2^30-token stream (generated once, cached)
        data=DataSpec(
            "pcfg",
            params={
                "depth": 5,
                "n_symbols": 6,
                "n_rules": 3,
                "n_terminals": 16,
                "n_tokens": 1 << 30,
            },
        ),
        batch_size=64,
        seq_len=256,
        eval_batch_size=512,
        precision="bf16",
    ),
    run=RunConfig(
        eval_every=1000,
        log_every=100,
        noise_every=0,
        gpus_per_worker=1,
        cpus_per_worker=4,
        device="cuda",
    ),
    ladder=(  # ×~2 per rung in parameters (12·d²·L: 0.8M ... 141M)
        (128, 4, 4),
        (160, 6, 5),
        (224, 6, 7),
        (256, 8, 8),
        (320, 10, 10),
        (448, 10, 14),
        (512, 14, 16),
        (640, 16, 10),
        (768, 20, 12),
    ),
    # not piloted (windows around ~20 tokens per parameter): look at the slices, then shift
    windows={
        1e16: (1, 2, 3, 4, 5),
        3e16: (2, 3, 4, 5, 6),
        1e17: (3, 4, 5, 6, 7),
        3e17: (4, 5, 6, 7, 8),
    },
)

# the quick study with WSD: each shape's budgets are cooldowns of its longest run (no follow-up)
WSD = dataclasses.replace(QUICK, name="isoflop_wsd", schedule="wsd", follow_up=False)

DESIGNS = {d.name: d for d in (QUICK, CLUSTER, WSD)}
PRESETS = {"quick": QUICK.sweep(), "cluster": CLUSTER.sweep(), "wsd": WSD.sweep()}
SPEC = PRESETS["quick"]


# --------------------------------------------------------------------------- analysis


def load_runs(root: Path):
    """runs.parquet with `budget_flops`: each run's requested FLOP budget, recovered as
    flops_per_token × grid.tokens (the requested tokens) snapped to the design's budgets, and
    `budget`, its label (the approach-2 slices)."""
    import numpy as np
    import polars as pl

    runs = pl.read_parquet(Path(root) / "runs.parquet")
    design = design_of(runs)
    tokens = "grid.tokens" if "grid.tokens" in runs.columns else "tokens"
    c = (runs["flops_per_token"].cast(pl.Float64) * runs[tokens].cast(pl.Float64)).to_numpy()
    budgets = np.array(design.budgets + [design.follow_up_budget])
    near = np.abs(np.log(c)[:, None] - np.log(budgets)[None, :]).argmin(1)
    if np.any(np.abs(np.log(c / budgets[near])) > 0.01):
        raise ValueError(f"{root}: some runs are not on a budget of design {design.name!r}")
    flops = budgets[near]
    return runs.with_columns(
        budget=pl.Series([f"{b:.3g}" for b in flops]),  # slice label, e.g. "3e+11"
        budget_flops=pl.Series(flops),
    )


def design_of(runs) -> Design:
    names = runs["study"].unique().to_list()
    if len(names) != 1 or names[0] not in DESIGNS:
        raise ValueError(f"runs of study {names}: expected one of {', '.join(DESIGNS)}")
    return DESIGNS[names[0]]


def entropy_rate(design: Design) -> float:
    """The design's grammar's entropy rate (nats/token; scalelab.data.pcfg): no model beats it,
    so it is approach 3's known floor E."""
    from scalelab import data

    b = design.base.data
    return float(data.build(b.name, seed=b.seed, **b.params).entropy_rate()["entropy_rate"])


def analyse(
    root: Path, runs=None, n_boot: int | None = None, floor: float | None = None
) -> dict[str, Any]:
    """Both fits on the study's runs (budget slices, flops_per_token convention) and their
    comparison (a ChinchillaAnalysis), approach 3 with E held at `floor` (the grammar's entropy
    rate unless given), and a free-E approach-3 fit beside it (`free`, E_IMPLAUSIBLE when its E
    is below the floor); proposals at follow_up_budget from all three. A slice without a
    minimum is skipped and reported (SLICE_SKIPPED), not fatal. `n_boot`: the design's unless
    given."""
    from scalelaws.chinchilla.propose import propose_size
    from scalelaws.chinchilla.study import fit_chinchilla, propose_sizes

    runs = load_runs(root) if runs is None else runs
    design = design_of(runs)
    floor = entropy_rate(design) if floor is None else floor
    kw = {"compute": COMPUTE, "n_boot": design.n_boot if n_boot is None else n_boot}
    fits = fit_chinchilla(runs, FIT_COLUMNS, budget_col="budget", skip_bad_slices=True,
                          fix_e=floor, e_floor=floor, **kw)  # fmt: skip
    free = fit_chinchilla(runs, FIT_COLUMNS, approach="3", e_floor=floor, **kw).approach3
    c = design.follow_up_budget
    props = propose_sizes(fits, c).proposals  # approach3 (E held), approach2
    props["approach3_free_e"] = propose_size(free, c)
    return {"design": design, "runs": runs, "fits": fits, "free": free, "floor": floor,
            "proposals": props}  # fmt: skip


def follow_up(design: Design, n_star: float, root: Path) -> tuple[SweepSpec, list[dict]]:
    """The ladder shape nearest N* (in ln N) and the rungs just below and above it, at the
    follow-up budget. Returns the sweep and one dict per shape (role, shape, N, D planned)."""
    import numpy as np

    ns = np.array([params_total(design, s) for s in design.ladder], float)
    i = int(np.abs(np.log(ns) - math.log(n_star)).argmin())
    if not 0 < i < len(ns) - 1:
        raise ValueError(
            f"N* = {n_star:.3g} snaps to the end of the ladder ({ns[i]:.3g}): extend the "
            "ladder so the proposal has a rung on each side"
        )
    c = design.follow_up_budget
    shapes = []
    for role, j in (("below", i - 1), ("proposed", i), ("above", i + 1)):
        s = design.ladder[j]
        p = design.point(s, c)
        steps = p["tokens"] // (design.base.batch_size * design.base.seq_len)
        d = steps * design.base.batch_size * design.base.seq_len
        shapes.append({"role": role, "shape": list(s), "n": float(ns[j]), "d": float(d),
                       "flops": c, "point": p})  # fmt: skip
    name = f"{design.name}_follow_up"
    spec = SweepSpec(
        name=name,
        base=design.base,
        run=design.run,
        points=[s["point"] for s in shapes],
        storage=str(Path(root).parent / name),
    )
    return spec, shapes


def predicted_loss(surf, n: float, d: float, level: float = 0.9) -> tuple[float, float, float]:
    """Approach-3 L(N, D) and its `level` prediction interval (scalelaws.chinchilla.predict:
    bootstrap parameter sets plus a resampled residual)."""
    from scalelaws.chinchilla.predict import loss_prediction

    p = loss_prediction(surf, n, d, level=level)
    return float(p.point[0]), float(p.lo[0]), float(p.hi[0])


def score(surf, shapes: list[dict], follow_runs, free=None) -> dict[str, Any]:
    """Predicted (90% prediction interval) vs measured final loss per follow-up shape, from
    `surf` and, when given, the free-E fit `free` (`*_free` keys); did the proposal win, and
    how many measured losses fell inside each fit's interval?"""
    import polars as pl

    rows = []
    done = follow_runs.filter(pl.col("status") == "completed")
    for s in shapes:
        d, n_layers, _ = s["shape"]
        hit = done.filter((pl.col("d_model") == d) & (pl.col("n_layers") == n_layers))
        if hit.height != 1:
            raise ValueError(f"follow-up: no completed run for shape {s['shape']}")
        r = hit.row(0, named=True)
        pred, lo, hi = predicted_loss(surf, r["params_total"], r["tokens_seen"])
        rows.append(
            {
                "role": s["role"], "shape": s["shape"], "trial": r["trial"],
                "n": float(r["params_total"]), "d": float(r["tokens_seen"]), "flops": s["flops"],
                "predicted": pred, "predicted_lo": lo, "predicted_hi": hi,
                "measured": float(r["final_eval_loss"]),
                "error": float(r["final_eval_loss"]) - pred,
            }
        )  # fmt: skip
        if free is not None:
            pf, lf, hf = predicted_loss(free, r["params_total"], r["tokens_seen"])
            rows[-1] |= {"predicted_free": pf, "predicted_free_lo": lf, "predicted_free_hi": hf}
    by = {r["role"]: r for r in rows}
    best_other = min(by["below"]["measured"], by["above"]["measured"])
    best_pred = min(rows, key=lambda r: r["predicted"])["role"]
    return {
        "rows": rows,
        "best_measured": min(rows, key=lambda r: r["measured"])["role"],
        "best_predicted": best_pred,
        "proposed_beat_neighbours": by["proposed"]["measured"] < best_other,
        "margin": best_other - by["proposed"]["measured"],  # > 0: the proposal won by this
        "covered": sum(r["predicted_lo"] <= r["measured"] <= r["predicted_hi"] for r in rows),
        "covered_free": sum(
            r["predicted_free_lo"] <= r["measured"] <= r["predicted_free_hi"] for r in rows
        )
        if free is not None
        else None,
    }


# --------------------------------------------------------------------------- report


def _iv(iv, fmt: str = ".4g") -> str:
    if iv is None or any(v is None or not math.isfinite(v) for v in iv):
        return "-"
    return f"[{iv[0]:{fmt}}, {iv[1]:{fmt}}]"


def report(res: dict[str, Any], scores: dict | None, wall_s: dict | None = None) -> str:
    """isoflop.md: design, runs, both fits, comparison, proposals, follow-up score."""
    design, runs, fits = res["design"], res["runs"], res["fits"]
    surf, iso, cmp = fits.approach3, fits.approach2, fits.comparison
    lines = [f"# isoFLOP study `{design.name}`", ""]
    lines += [
        f"FLOPs convention: {surf.info['compute_convention']}; N = params_total (tied embedding "
        "counted once), D = tokens_seen, loss = final_eval_loss (nats/token).",
        "",
        "## Runs (final eval loss)",
        "",
        "| C (FLOPs) | shape (d, L, H) | N | D (tokens) | steps | loss |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs.sort(["budget_flops", "params_total"]).iter_rows(named=True):
        lines.append(
            f"| {r['budget']} | ({r['d_model']}, {r['n_layers']}, {r['n_heads']}) | "
            f"{r['params_total']:,} | {r['tokens_seen']:,} | {r['steps_done']:,} | "
            f"{_f4(r['final_eval_loss'])} |"
        )
    h = res["floor"]
    lines += ["", compute_spent(runs, design)]
    lines += _surface_table(f"Approach 3: L(N, D) = E + A/N^α + B/D^β, E held at the grammar's "
                            f"entropy rate {h:.4f}", surf)  # fmt: skip
    lines += _surface_table("Approach 3 with E free (for comparison)", res["free"])
    m = surf.metrics
    lines += ["## Approach 2: parabola in ln N per budget", "",
              "| C (FLOPs) | runs | N range | N_opt | N_opt 95% | D_opt | loss at N_opt |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in iso.slices:
        flag = " (extrapolated)" if s["extrapolated"] else ""
        lines.append(
            f"| {s['flops']:.3g} | {s['n_points']} | {s['n_min']:.3g}-{s['n_max']:.3g} | "
            f"{s['n_opt']:.4g}{flag} | {_iv((s['n_opt_lo'], s['n_opt_hi']))} | "
            f"{s['d_opt']:.4g} | {s['loss_min']:.4f} |"
        )
    p, iv = iso.params, iso.intervals
    lines += [
        "",
        f"N_opt ∝ C^{p['n_exponent']:.3f} (95% {_iv(iv['n_exponent'], '.3f')}), "
        f"D_opt ∝ C^{p['d_exponent']:.3f} (95% {_iv(iv['d_exponent'], '.3f')}).",
        "",
        "## Approaches side by side",
        "",
        "| C (FLOPs) | N*_2 | N*_3 | N*_3 95% | ratio 2/3 | disagree |",
        "|---|---|---|---|---|---|",
    ]
    for b in cmp.budgets:
        lines.append(
            f"| {b['flops']:.3g} | {b['n_opt_2']:.4g} | {b['n_opt_3']:.4g} | "
            f"{_iv((b['n_opt_3_lo'], b['n_opt_3_hi']))} | {b['ratio']:.3f} | "
            f"{ {True: 'yes', False: 'no', None: '-'}[b['disagree']] } |"
        )
    lines += ["", f"## Proposals at C = {design.follow_up_budget:.3g} FLOPs "
              f"({design.follow_up_factor:g}× the largest budget)", "",
              "| from | N | N 95% | D | D/N | loss |", "|---|---|---|---|---|---|"]  # fmt: skip
    for key, prop in res["proposals"].items():
        q, qi = prop.params, prop.intervals
        loss = f"{q['loss']:.4f} {_iv(qi.get('loss'))}" if "loss" in q else "-"
        lines.append(
            f"| {FROM[key]} | {q['n']:.4g} | {_iv(qi['n'])} | "
            f"{q['d']:.4g} | {q['tokens_per_param']:.3g} | {loss} |"
        )
    if scores is not None:
        lines += ["", "## Follow-up at the proposal's budget (one seed)", "",
                  "Predicted final loss with 90% prediction intervals.", "",
                  "| shape | role | N | D | approach 3, E held | approach 3, E free | measured |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in scores["rows"]:
            free = "-"
            if "predicted_free" in r:
                free = f"{r['predicted_free']:.4f} "
                free += _iv((r["predicted_free_lo"], r["predicted_free_hi"]))
            lines.append(
                f"| {tuple(r['shape'])} | {r['role']} | {r['n']:,.0f} | {r['d']:,.0f} | "
                f"{r['predicted']:.4f} {_iv((r['predicted_lo'], r['predicted_hi']))} | "
                f"{free} | {r['measured']:.4f} |"
            )
        won = "beat" if scores["proposed_beat_neighbours"] else "did not beat"
        n = len(scores["rows"])
        cov = f"{scores['covered']} of {n} measured losses inside the E-held intervals"
        if scores.get("covered_free") is not None:
            cov += f", {scores['covered_free']} of {n} inside the E-free ones"
        lines += [
            "",
            f"The proposed shape {won} both neighbours: margin {scores['margin']:+.4f} "
            f"(best neighbour − proposed; > 0 means the proposal won). Lowest measured: "
            f"{scores['best_measured']}; lowest predicted: {scores['best_predicted']}. "
            f"{cov}. Approach-3 (E held) residual RMSE over the sweep: {m['rmse']:.4f}.",
        ]
    if wall_s:
        lines += ["", "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall_s.items())]
    parts = [(k, getattr(fits, k)) for k in ("approach3", "approach2", "comparison")]
    parts.append(("approach3 (E free)", res["free"]))
    diags = [(k, d) for k, part in parts for d in (part.diagnostics if part is not None else ())]
    diags += [(f"proposal from {FROM[k]}", d) for k, p in res["proposals"].items()
              for d in p.diagnostics]  # fmt: skip
    lines += ["", "## Diagnostics", ""]
    lines += [f"- {k}: {d.line()}" for k, d in diags] or ["- none"]
    return "\n".join(lines) + "\n"


def compute_spent(runs, design: Design) -> str:
    """Training FLOPs the sweep spent (updates each trial trained itself × tokens per update ×
    flops_per_token) against the same trials trained from scratch."""
    import polars as pl

    tokens = design.base.batch_size * design.base.seq_len
    fork = pl.col("fork_step").fill_null(0) if "fork_step" in runs.columns else pl.lit(0)
    per = pl.col("flops_per_token").cast(pl.Float64) * tokens
    own = ((pl.col("steps_done") - fork).clip(lower_bound=0) * per).sum()
    full = (pl.col("steps_done") * per).sum()
    spent, scratch = runs.select(own.alias("own"), full.alias("full")).row(0)
    return (f"Compute spent: {spent:.3g} FLOPs of the {scratch:.3g} the same runs cost from "
            f"scratch ({spent / scratch:.0%}; shared prefixes trained once).")  # fmt: skip


FROM = {"approach3": "approach 3 (E held)", "approach2": "approach 2",
        "approach3_free_e": "approach 3 (E free)"}  # fmt: skip


def _surface_table(title: str, surf) -> list[str]:
    """An approach-3 fit's parameters with 95% bootstrap intervals and its fit quality."""
    lines = ["", f"## {title}", "", "| param | estimate | 95% bootstrap |", "|---|---|---|"]
    for k in ("E", "A", "B", "alpha", "beta", "n_exponent", "d_exponent", "G"):
        lines.append(f"| {k} | {surf.params[k]:.5g} | {_iv(surf.intervals.get(k), '.5g')} |")
    m = surf.metrics
    return lines + ["", f"{m['n_points']} runs, R² {m['r2']:.4f}, RMSE {m['rmse']:.4f}, "
                    f"{surf.info['n_boot']} resamples ({surf.info['boot_failed']} failed).", ""]  # fmt: skip


def _f4(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def write_outputs(root: Path, res: dict[str, Any], shapes: list[dict] | None,
                  scores: dict | None, wall_s: dict | None = None) -> None:  # fmt: skip
    """ROOT/isoflop.json (a ChinchillaAnalysis: the fits, the proposals; the study, follow-up
    and scores in its info), isoflop.md and isoflop.png."""
    from scalelaws.chinchilla.plots import plot_isoflop
    from scalelaws.chinchilla.runs import chinchilla_runs
    from scalelaws.io import write_text

    design, fits = res["design"], res["fits"]
    info = {
        "study": design.name,
        "compute": COMPUTE,
        "columns": FIT_COLUMNS,
        "budget_col": "budget (flops_per_token × grid.tokens, snapped to the design's budgets)",
        "budgets": design.budgets,
        "follow_up": {
            "flops": design.follow_up_budget,
            "shapes": [{k: v for k, v in s.items() if k != "point"} for s in shapes or []],
            "scores": scores,
        },
        "wall_s": wall_s or {},
        "entropy_rate": res["floor"],  # approach 3's E is held here
        "approach3_free_e": res["free"].to_dict(),
    }
    fits.replace(proposals=res["proposals"], info=fits.info | info).to_json(
        Path(root) / "isoflop.json"
    )
    write_text(Path(root) / "isoflop.md", report(res, scores, wall_s))
    rt = chinchilla_runs(res["runs"], compute=COMPUTE, **FIT_COLUMNS)
    plot_isoflop(Path(root) / "isoflop.png", iso=fits.approach2, surf=fits.approach3,
                 runs=rt, proposal=res["proposals"]["approach3"],
                 follow_up=scores["rows"] if scores else None)  # fmt: skip


def after(root: Path) -> None:
    """Fit, propose, run the follow-up, score it, write ROOT/isoflop.{md,json,png}."""
    import time

    import polars as pl

    from scalelab import launch
    from scalelab.commands.chinchilla import make_console, print_fits, print_proposal

    t0 = time.time()
    res = analyse(root)
    console = make_console()
    print_fits(console, res["fits"])
    for key, prop in res["proposals"].items():
        print_proposal(console, FROM[key], prop)
    if not res["design"].follow_up:
        write_outputs(root, res, None, None, {"analysis": time.time() - t0})
        print((Path(root) / "isoflop.md").read_text())
        return
    spec, shapes = follow_up(res["design"], res["proposals"]["approach3"].params["n"], root)
    write_outputs(root, res, shapes, None)  # the fits survive a failed follow-up
    t1 = time.time()
    shown = ", ".join(f"{s['role']} {tuple(s['shape'])}" for s in shapes)
    print(f"follow-up at C = {shapes[0]['flops']:.3g} FLOPs: {shown} -> {spec.storage}")
    check = launch.run(spec, wandb_mode=None, show_progress=False)
    t2 = time.time()
    follow_runs = pl.read_parquet(check / "runs.parquet")
    scores = score(res["fits"].approach3, shapes, follow_runs, free=res["free"])
    wall = {"analysis": t1 - t0, "follow-up sweep": t2 - t1}
    write_outputs(root, res, shapes, scores, wall)
    print((Path(root) / "isoflop.md").read_text())


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
