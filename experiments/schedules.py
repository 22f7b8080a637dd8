"""Closed loop for the multi-power law (Luo et al., ICLR 2025, arXiv 2503.12811).

1. Train one small model on the PCFG language with the fitting schedules (constant, cosine,
   one step drop) and held-out ones (WSD linear and exponential over the last 20%, a WSD
   cooldown family: linear and 1-sqrt decays over 10%, 30%, 50%, 70% and 90% of the steps,
   and a 1.5x longer cosine).
2. Fit the MPL on the first group; report its prediction accuracy on the second.
3. Propose the schedule that minimises the predicted final loss for the same budget.
4. Run the proposal next to cosine and the best WSD with 5 seeds each; compare the measured
   final loss (mean +- std over seeds) with the prediction, and the proposal with each
   baseline seed by seed (paired differences, 95% t-interval). Written to report.md and
   closed_loop.json.

    scalelab run experiments/schedules.py      # 8.5 min on 2 cores (2026-12-06, shared prefixes on)
"""

from __future__ import annotations

from pathlib import Path

from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

STEPS = 1000
WARMUP = 50
PEAK = 3e-3
FLOOR = PEAK / 10
SEEDS = [0, 1, 2, 3, 4]  # the validation study; paired differences want at least 5

FIT = [
    ScheduleSpec("constant", WARMUP),
    ScheduleSpec("cosine", WARMUP, {"final_lr": FLOOR}),
    ScheduleSpec("wsdcon", WARMUP, {"drop_step": 700, "value": FLOOR}),
]
HELD_OUT = [
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": FLOOR}),
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "exp", "final_lr": FLOOR}),
]
# WSD cooldowns of every length in two shapes, held out too: how well does a fit on three
# schedules predict the length and shape of the decay?
COOLDOWN = [
    ScheduleSpec("wsd", WARMUP, {"decay_frac": f, "shape": s, "final_lr": FLOOR})
    for s in ("linear", "1-sqrt")
    for f in (0.1, 0.3, 0.5, 0.7, 0.9)
]

BASE = TrialSpec(
    model=ModelSpec("150K"),
    optim=OptimSpec(lr=PEAK),
    data=DataSpec("pcfg"),
    batch_size=16,  # sequences per step
    seq_len=64,  # 1,024 tokens per step
    total_steps=STEPS,
    eval_batch_size=128,
)
RUN = RunConfig(eval_every=10, noise_every=0)

SPEC = SweepSpec(
    name="schedules",
    base=BASE,
    run=RUN,
    points=[{"schedule": s} for s in FIT + HELD_OUT + COOLDOWN]
    + [{"schedule": ScheduleSpec("cosine", WARMUP, {"final_lr": FLOOR}), "total_steps": 1500}],
)


def validation_spec(proposal, root: Path) -> SweepSpec:
    """The proposal next to cosine and the best WSD, one run per seed of SEEDS each, same
    budget."""
    base = proposal.baselines
    schedules = [
        ScheduleSpec("array", WARMUP, {"values": proposal.lr.tolist()}),  # in the spec: hashed
        ScheduleSpec("cosine", WARMUP, base["cosine"]["params"]),
        ScheduleSpec("wsd", WARMUP, base["wsd"]["params"]),  # registry terms: decay_steps, ...
    ]
    return SweepSpec(
        name="schedules_validate",
        base=BASE,
        run=RUN,
        grid={"schedule": schedules, "seed": SEEDS},
        storage=str(root.parent / "schedules_validate"),
    )


# the MPL fit: runs.parquet filters (Polars SQL); the test set is every WSD of the sweep (the
# 20% linear and exp ones and the cooldown family) and the longer cosine
WHERE = f"total_steps = {STEPS} AND schedule IN ('constant', 'cosine', 'wsdcon')"
TEST_WHERE = f"(schedule = 'wsd' AND total_steps = {STEPS}) OR total_steps = {int(1.5 * STEPS)}"


def fit_and_propose(root: Path):
    """MPL fit on the FIT schedules (held out: every WSD and the longer cosine), then the proposal
    for the same budget; writes mpl_fit.json/png and proposed_schedule.json/png."""
    import polars as pl

    import scalelaws as sl
    from scalelaws.multipower.fit import collect_curves
    from scalelaws.multipower.plots import plot_curves, plot_proposal

    study = sl.load_study(root)
    done = study.runs.filter(pl.col("status") == "completed")
    fit_runs = done.filter(pl.sql_expr(WHERE))["trial"].to_list()
    test_runs = done.filter(pl.sql_expr(TEST_WHERE))["trial"].to_list()
    curves = collect_curves(
        study.curves.filter(pl.col("trial").is_in(fit_runs)),
        study.curves.filter(pl.col("trial").is_in(test_runs)),
        study=study,
    )
    fit = sl.fit_multipower(curves)
    fit.to_json(root / "mpl_fit.json")
    plot_curves(curves, fit.params, root / "mpl_fit.png", law=fit.law, fit=fit)
    prop = sl.propose_schedule(root / "mpl_fit.json", STEPS, PEAK, warmup_steps=WARMUP, floor=FLOOR)
    prop.to_json(root / "proposed_schedule.json")
    plot_proposal(prop, root / "proposed_schedule.png")
    return fit, prop


def after(root: Path) -> None:
    import polars as pl

    from scalelab import launch

    fit, proposal = fit_and_propose(root)
    check = launch.run(validation_spec(proposal, root), wandb_mode=None)
    print(write_closed_loop(root, fit, proposal, pl.read_parquet(check / "runs.parquet")))


NAMES = {"array": "proposed (MPL-optimal)", "cosine": "cosine", "wsd": "best WSD"}


def write_closed_loop(root: Path, fit, proposal, runs) -> str:
    """report.md (fit accuracy, predicted against measured, paired differences over seeds) and
    closed_loop.json (the paired differences) from the validation study's runs; returns the
    report."""
    import polars as pl

    from scalelaws.io import write_text

    predicted = {
        "array": proposal.predicted_final_loss,
        "cosine": proposal.baselines["cosine"]["predicted_final_loss"],
        "wsd": proposal.baselines["wsd"]["predicted_final_loss"],
    }
    done = runs.filter(pl.col("status") == "completed")
    table = (
        done.group_by("schedule")
        .agg(
            pl.col("final_eval_loss").mean().alias("measured"),
            pl.col("final_eval_loss").std().alias("std"),
            pl.len().alias("seeds"),
        )
        .with_columns(predicted=pl.col("schedule").replace_strict(predicted, default=None))
        .sort("measured")
    )
    lines = [
        f"MPL fitted on {WHERE}; tested on {TEST_WHERE}.",
        "",
        "| curves | R² | MAE | PredE | WorstE |",
        "|---|---|---|---|---|",
    ]
    for role in ("fit", "test"):
        m = fit.metrics[role]
        lines.append(
            f"| {role} | {m['r2']:.4f} | {m['mae']:.4f} | {m['pred_e']:.4f} | {m['worst_e']:.4f} |"
        )
    lines += [
        "",
        f"Final eval loss after {STEPS} steps, {len(SEEDS)} seeds each:",
        "",
        "| schedule | predicted | measured (mean ± std) |",
        "|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {NAMES.get(r['schedule'], r['schedule'])} | {r['predicted']:.4f} | "
            f"{r['measured']:.4f} ± {r['std'] or 0:.4f} (n={r['seeds']}) |"
        )
    lines += ["", *paired_lines(root, runs)]
    report = "\n".join(lines) + "\n"
    write_text(root / "report.md", report)
    return report


def paired_lines(root: Path, runs) -> list[str]:
    """The paired-differences table for report.md; the result goes to closed_loop.json."""
    import scalelaws as sl

    try:
        paired = sl.paired_differences(runs, total_steps=STEPS)
    except ValueError as e:  # no proposal runs, no pairs: say so in the report
        (root / "closed_loop.json").unlink(missing_ok=True)  # not an older run's
        return [f"No paired differences: {e}"]
    paired.to_json(root / "closed_loop.json")
    pct = f"{100 * paired.level:.0f}%"
    lines = [
        f"Proposed minus baseline, paired by seed (same seed: same init and data order); "
        f"mean over seeds with its {pct} t-interval (negative: the proposal is better):",
        "",
        f"| comparison | mean | {pct} interval | n | excludes 0? |",
        "|---|---|---|---|---|",
    ]
    for c in paired.comparisons:
        iv = "none" if c.lo is None else f"[{c.lo:+.4f}, {c.hi:+.4f}]"
        yes = "yes" if c.excludes_zero else "no"
        name = NAMES.get(c.baseline, c.baseline)
        lines.append(f"| proposed − {name} | {c.mean:+.4f} | {iv} | {c.n} | {yes} |")
    return lines + [f"- {d.line()}" for d in paired.diagnostics]


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
