"""SweepSpec expansion: stable names, budgets, and >= 10 malformed studies failing on one line."""

from __future__ import annotations

import dataclasses

import pytest

from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    SpecError,
    TrialSpec,
)
from scalelab.sweep import SweepSpec, expand, isoflop, lr_batch_grid

BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=3e-3),
    data=DataSpec("pcfg"),
    batch_size=16,
    seq_len=32,
    total_steps=100,
)
PLAIN = TrialSpec(data=DataSpec("pcfg"), seq_len=32, total_steps=100)  # for grids over the model


def test_expand_crosses_the_grid_with_stable_readable_names():
    spec = SweepSpec(
        "s", PLAIN, grid={**lr_batch_grid(["50K", "150K"], [16, 32], [1e-3, 3e-3]), "seed": [0, 1]}
    )
    trials = expand(spec)
    assert len(trials) == 16
    assert len({t.name for t in trials}) == 16
    assert trials[0].name.startswith("N50K-B16-lr1e-3-cosine-s0-")
    assert [t.name for t in expand(spec)] == [t.name for t in trials]  # no random parts
    assert all(t.spec.study == "s" for t in trials)


def test_token_budget_sets_steps_and_shows_in_the_name():
    spec = SweepSpec("s", BASE, grid={"tokens": [51_200, 102_400]})
    a, b = expand(spec)
    assert (a.spec.total_steps, b.spec.total_steps) == (100, 200)  # 51200 / (16 x 32)
    assert "-D51.2K-" in a.name


def test_schedule_points_and_schedule_objects():
    spec = SweepSpec(
        "s",
        BASE,
        grid={"schedule": [ScheduleSpec("constant"), ScheduleSpec("wsd", 0, {"decay_frac": 0.2})]},
    )
    a, b = expand(spec)
    assert a.spec.schedule.name == "constant" and b.spec.schedule.params == {"decay_frac": 0.2}


def test_isoflop_points_expand():
    pts = isoflop([1e12], ["50K", "150K"], vocab_size=8, seq_len=32, batch_size=16)
    trials = expand(SweepSpec("iso", BASE, points=pts))
    small, big = trials
    assert (
        small.spec.total_steps > big.spec.total_steps
    )  # same compute, smaller model sees more tokens


def test_placement_keys_change_neither_names_nor_hashes():
    """The same study on a laptop and on a cluster: same trials, same names."""
    laptop = SweepSpec("s", BASE, grid={"optim.lr": [1e-3, 3e-3]})
    cluster = dataclasses.replace(
        laptop, run=RunConfig(workers=2, cpus_per_worker=4, device="cuda", log_every=10)
    )
    a, b = expand(laptop), expand(cluster)
    assert [t.name for t in a] == [t.name for t in b]
    assert [t.content_hash() for t in a] == [t.content_hash() for t in b]
    assert b[0].run.workers == 2 and a[0].run.workers == 1
    per_point = SweepSpec("s", BASE, points=[{"optim.lr": 1e-3, "eval_every": 5}])
    (t,) = expand(per_point)
    assert t.name == a[0].name and t.run.eval_every == 5


def test_grid_point_is_kept_with_budgets_as_requested():
    spec = SweepSpec(
        "s",
        BASE,
        grid={"tokens": [60_000], "schedule": [ScheduleSpec("wsd", 5, {"decay_frac": 0.2})]},
    )
    (t,) = expand(spec)
    assert t.spec.total_steps == 117  # 60000 // (16 x 32), rounded down
    assert t.spec.grid == {
        "tokens": 60_000,
        "schedule": {"name": "wsd", "warmup_steps": 5, "params": {"decay_frac": 0.2}},
    }


def test_explicit_shapes_are_grid_keys():
    spec = SweepSpec(
        "s",
        dataclasses.replace(BASE, model=ModelSpec(size="", n_heads=4)),
        grid={"model.d_model": [32, 64], "model.n_layers": [2, 4]},
    )
    trials = expand(spec)
    assert [t.spec.model.shape()["d_model"] for t in trials] == [32, 32, 64, 64]
    assert trials[0].name.startswith("Nd32L2H4-B16-lr3e-3-cosine-s0-d32-L2-")


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
    (dict(grid={"tokens": [51_200], "total_steps": [100]}), "grid"),  # both set the steps
    (dict(grid={"schedule": [ScheduleSpec("constant")], "schedule.name": ["cosine"]}), "grid"),
    (dict(grid={"total_steps": [100], "eval_every": [10, 20]}), "grid"),  # same trial twice
    (dict(points=[{"tokens": 51_200, "exposures": 3}]), "points[0]"),
    (dict(grid={"name": ["x"]}), "grid.name"),
    (dict(grid={"batch_size": [8, 32]}), "grid.batch_size"),  # BASE sets 16: never used
]


@pytest.mark.parametrize("change,field", MALFORMED, ids=[f for _, f in MALFORMED])
def test_malformed_study_fails_with_one_line_naming_the_field(change, field):
    spec = dataclasses.replace(SweepSpec("ok", BASE), **change)
    with pytest.raises(SpecError) as e:
        expand(spec)
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg


def test_placement_from_the_command_line_keeps_names():
    from scalelab.study import with_placement

    spec = SweepSpec("s", BASE, grid={"seed": [0, 1]})
    moved = with_placement(spec, ["device=cuda", "gpus_per_worker=0.25", "log_every=10"])
    assert (moved.run.device, moved.run.gpus_per_worker, moved.run.log_every) == ("cuda", 0.25, 10)
    assert [t.name for t in expand(moved)] == [t.name for t in expand(spec)]
    with pytest.raises(SpecError, match=r"^placement: 'seed=3' must be KEY=VALUE with KEY one of"):
        with_placement(spec, ["seed=3"])  # identity is not placement
