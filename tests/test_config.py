"""Specs: JSON round trip, one-line errors naming the field, and the package layout."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from scalelab.config import DataSpec, ModelSpec, OptimSpec, ScheduleSpec, SpecError, TrialSpec


def test_platform_stdlib_module_still_works_beside_our_packages():
    code = "import scalelab, scalelaws, platform; print(platform.system())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("Linux", "Darwin", "Windows")


def test_trial_spec_round_trips_through_json():
    spec = TrialSpec(
        name="x",
        model=ModelSpec("500K", mlp="gated", norm="rmsnorm"),
        optim=OptimSpec(lr=1e-3, weight_decay=0.0),
        schedule=ScheduleSpec("wsd", warmup_steps=10, params={"decay_frac": 0.2, "shape": "exp"}),
        data=DataSpec("biod", seed=3, params={"n_people": 100}),
        batch_size=16,
        total_steps=100,
        workers=2,
    )
    back = TrialSpec.from_json(spec.to_json())
    assert back == spec
    assert back.content_hash() == spec.content_hash()
    assert dataclasses.replace(spec, name="y").content_hash() == spec.content_hash()
    assert dataclasses.replace(spec, seed=1).content_hash() != spec.content_hash()
    spec.validate()


BAD = [
    (dict(optim=OptimSpec(lr=-1e-3)), "optim.lr"),
    (dict(optim=OptimSpec(lr=float("nan"))), "optim.lr"),
    (dict(batch_size=10, workers=3), "batch_size"),
    (dict(batch_size=0), "batch_size"),
    (dict(model=ModelSpec(size="7T")), "model.size"),
    (dict(model=ModelSpec(mlp="relu")), "model.mlp"),
    (dict(schedule=ScheduleSpec("triangle")), "schedule"),
    (
        dict(schedule=ScheduleSpec("cosine", warmup_steps=500), total_steps=100),
        "schedule.warmup_steps",
    ),
    (dict(data=DataSpec("wikipedia")), "data.name"),
    (dict(data=DataSpec("pcfg", params={"colour": 1})), "data.params.colour"),
    (dict(total_steps=0), "total_steps"),
    (dict(eval_every=0), "eval_every"),
    (dict(device="tpu"), "device"),
    (dict(micro_batch_size=5, batch_size=32), "micro_batch_size"),
    (dict(ewa_decay=1.5), "ewa_decay"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
def test_bad_values_raise_one_line_error_naming_the_field(change, field):
    with pytest.raises(SpecError) as e:
        dataclasses.replace(TrialSpec(), **change).validate()
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg


def test_unknown_json_field_is_named():
    with pytest.raises(SpecError, match=r"^optim\.momentum: unknown field"):
        TrialSpec.from_dict({"optim": {"momentum": 0.9}})
