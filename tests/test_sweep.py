"""SweepSpec expansion: stable names, budgets, and >= 10 malformed studies failing on one line."""

from __future__ import annotations

import dataclasses

import pytest

from scalelab.config import DataSpec, ModelSpec, OptimSpec, ScheduleSpec, SpecError, TrialSpec
from scalelab.sweep import SweepSpec, expand, isoflop, lr_batch_grid

BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=3e-3),
    data=DataSpec("pcfg"),
    batch_size=16,
    seq_len=32,
    total_steps=100,
)


def test_expand_crosses_the_grid_with_stable_readable_names():
    spec = SweepSpec(
        "s", BASE, grid={**lr_batch_grid(["50K", "150K"], [16, 32], [1e-3, 3e-3]), "seed": [0, 1]}
    )
    trials = expand(spec)
    assert len(trials) == 16
    assert len({t.name for t in trials}) == 16
    assert trials[0].name.startswith("N50K-B16-lr1e-3-cosine-s0-")
    assert [t.name for t in expand(spec)] == [t.name for t in trials]  # no random parts
    assert all(t.study == "s" for t in trials)


def test_token_budget_sets_steps_and_shows_in_the_name():
    spec = SweepSpec("s", BASE, grid={"tokens": [51_200, 102_400]})
    a, b = expand(spec)
    assert (a.total_steps, b.total_steps) == (100, 200)  # 51200 / (16 x 32)
    assert "-D51.2K-" in a.name


def test_schedule_points_and_schedule_objects():
    spec = SweepSpec(
        "s",
        BASE,
        grid={"schedule": [ScheduleSpec("constant"), ScheduleSpec("wsd", 0, {"decay_frac": 0.2})]},
    )
    a, b = expand(spec)
    assert a.schedule.name == "constant" and b.schedule.params == {"decay_frac": 0.2}


def test_isoflop_points_expand():
    pts = isoflop([1e12], ["50K", "150K"], vocab_size=8, seq_len=32, batch_size=16)
    trials = expand(SweepSpec("iso", BASE, points=pts))
    small, big = trials
    assert small.total_steps > big.total_steps  # same compute, smaller model sees more tokens


MALFORMED = [
    (dict(name="bad name!"), "name"),
    (dict(name=""), "name"),
    (dict(grid={"optim.lr": [1e-3, -1.0]}), "optim.lr"),
    (dict(grid={"optim.learning_rate": [1e-3]}), "grid.optim.learning_rate"),
    (dict(grid={"batchsize": [8]}), "grid.batchsize"),
    (dict(grid={"batch_size": []}), "grid.batch_size"),
    (dict(grid={"batch_size": 8}), "grid.batch_size"),
    (dict(grid={"model.size": ["50K", "huge"]}), "model.size"),
    (dict(grid={"schedule.name": ["cosine", "triangle"]}), "schedule"),
    (dict(grid={"batch_size": [16], "workers": [3]}), "batch_size"),
    (dict(grid={"data.name": ["nope"]}), "data.name"),
    (dict(grid={"tokens": [-5]}), "tokens"),
    (dict(grid={"exposures": [100]}), "exposures"),
    (dict(points=[{"seed": 0}, "seed=1"]), "points[1]"),
    (dict(grid={"seed": [0, 0]}), "grid"),
    (dict(max_failures=-1), "max_failures"),
    (dict(asha={"metric": "eval_loss", "patience": 3}), "asha.patience"),
    (dict(grid={"schedule.warmup_steps": [1000]}), "schedule.warmup_steps"),
]


@pytest.mark.parametrize("change,field", MALFORMED, ids=[f for _, f in MALFORMED])
def test_malformed_study_fails_with_one_line_naming_the_field(change, field):
    spec = dataclasses.replace(SweepSpec("ok", BASE), **change)
    with pytest.raises(SpecError) as e:
        expand(spec)
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg
