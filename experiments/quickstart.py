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
    from scalelab.cli import app

    fit = "model = '150K' AND schedule IN ('constant', 'cosine', 'wsdcon')"
    app(
        [
            "fit",
            "multipower",
            "--runs",
            str(root),
            "--where",
            fit,
            "--test-where",
            "model = '150K' AND schedule = 'wsd'",
            "--out",
            str(root / "mpl_fit.json"),
            "--plot",
            str(root / "mpl_fit.png"),
        ],
        standalone_mode=False,
    )
    app(
        [
            "propose",
            "schedule",
            "--fit",
            str(root / "mpl_fit.json"),
            "--total-steps",
            str(STEPS),
            "--warmup-steps",
            str(WARMUP),
            "--peak-lr",
            str(PEAK),
            "--out",
            str(root / "proposed_schedule.json"),
            "--plot",
            str(root / "proposed_schedule.png"),
        ],
        standalone_mode=False,
    )


if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
