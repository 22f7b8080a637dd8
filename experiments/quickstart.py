"""Quickstart study: two tiny GPTs x four LR schedules on the synthetic PCFG language.

Sized for a 2-core laptop (about 2 minutes). The constant, cosine and one-drop (wsdcon) curves
are what the multi-power law is fitted on; WSD is a held-out schedule.

    scalelab run experiments/quickstart.py      # or: python experiments/quickstart.py
"""

from scalelab.config import DataSpec, ModelSpec, OptimSpec, ScheduleSpec, TrialSpec
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
    base=TrialSpec(
        model=ModelSpec("50K"),
        optim=OptimSpec(lr=PEAK),
        data=DataSpec("pcfg"),
        batch_size=16,  # sequences per step
        seq_len=64,  # tokens per sequence -> 1,024 tokens per step
        total_steps=STEPS,
        eval_every=10,
        eval_batch_size=64,
        noise_every=10,
    ),
    grid={"model.size": ["50K", "150K"], "schedule": SCHEDULES},
)

if __name__ == "__main__":
    from scalelab.study import main

    main(__file__)
