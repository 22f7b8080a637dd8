"""Quickstart study: two tiny GPTs x four LR schedules on the synthetic PCFG language.

Sized for a 2-core laptop (about 2 minutes). The constant, cosine and one-drop (wsdcon) curves
are what the multi-power law is fitted on; WSD is a held-out schedule.

    scalelab run experiments/quickstart.py      # or: python experiments/quickstart.py
"""

from scalelab.config import DataSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

STEPS = 600
WARMUP = 30
PEAK = 3e-3

SCHEDULES = [
    ScheduleSpec("constant", WARMUP),
    ScheduleSpec("cosine", WARMUP, {"final_lr": PEAK / 10}),
    ScheduleSpec("wsdcon", WARMUP, {"drop_step": 400, "value": PEAK / 10}),
    ScheduleSpec("wsd", WARMUP, {"decay_frac": 0.2, "shape": "linear", "final_lr": PEAK / 10}),
]

SPEC = SweepSpec(
    name="quickstart",
    base=TrialSpec(  # the model comes from the grid
        optim=OptimSpec(lr=PEAK),
        data=DataSpec("pcfg"),
        batch_size=16,  # sequences per step
        seq_len=64,  # tokens per sequence -> 1,024 tokens per step
        total_steps=STEPS,
        eval_batch_size=64,
    ),
    run=RunConfig(eval_every=10, noise_every=10),  # placement and cadence: not in the hash
    grid={"model.size": ["50K", "150K"], "schedule": SCHEDULES},
)


def after(root):
    """Short multi-power-law loop: fit on the 150K model's constant, cosine and one-drop curves,
    test on WSD, then propose a schedule for the same budget (Luo et al. 2025)."""
    import polars as pl

    import scalelaws as sl
    from scalelaws.multipower.fit import collect_curves
    from scalelaws.multipower.plots import plot_curves, plot_proposal

    study = sl.load_study(root)
    done = study.runs.filter((pl.col("status") == "completed") & (pl.col("model") == "150K"))
    fitted = pl.col("schedule").is_in(["constant", "cosine", "wsdcon"])
    fit_runs = done.filter(fitted)["trial"].to_list()
    test_runs = done.filter(pl.col("schedule") == "wsd")["trial"].to_list()
    curves = collect_curves(
        study.curves.filter(pl.col("trial").is_in(fit_runs)),
        study.curves.filter(pl.col("trial").is_in(test_runs)),
        study=study,
    )
    fit = sl.fit_multipower(curves)
    fit.to_json(root / "mpl_fit.json")
    plot_curves(curves, fit.params, root / "mpl_fit.png", law=fit.law, fit=fit)
    prop = sl.propose_schedule(root / "mpl_fit.json", STEPS, PEAK, warmup_steps=WARMUP)
    prop.to_json(root / "proposed_schedule.json")
    plot_proposal(prop, root / "proposed_schedule.png")
    role = "test" if "test" in fit.metrics else "fit"
    print(
        f"MPL: {role} R² {fit.metrics[role]['r2']:.4f}; proposed schedule predicts "
        f"{prop.predicted_final_loss:.4f} (cosine "
        f"{prop.baselines['cosine']['predicted_final_loss']:.4f}) -> {root}"
    )


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
