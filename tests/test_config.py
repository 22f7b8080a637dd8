"""Specs: JSON round trip, one-line errors naming the field, and the package layout."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from scalelab.config import (
    RUN_FIELDS,
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    SpecError,
    Trial,
    TrialSpec,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_platform_stdlib_module_still_works_beside_our_packages():
    """From the repo root, where a folder named `platform/` sits first on sys.path, `import
    platform` must still be the standard library's module (ray and torch import it)."""
    code = (
        "import sys, sysconfig, scalelab, scalelaws, platform\n"
        "print(platform.system()); print(platform.__file__); print(sysconfig.get_path('stdlib'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    system, where, stdlib = out.stdout.split("\n")[:3]
    assert system in ("Linux", "Darwin", "Windows")
    assert Path(where).parent == Path(stdlib) and not (REPO / "platform" / "__init__.py").exists()


def test_trial_spec_round_trips_through_json():
    spec = TrialSpec(
        name="x",
        model=ModelSpec("500K", mlp="gated", norm="rmsnorm"),
        optim=OptimSpec(lr=1e-3, weight_decay=0.0),
        schedule=ScheduleSpec("wsd", warmup_steps=10, params={"decay_frac": 0.2, "shape": "exp"}),
        data=DataSpec("biod", seed=3, params={"n_people": 100}),
        batch_size=16,
        total_steps=100,
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
    (dict(ewa_decay=1.5), "ewa_decay"),
    (dict(optim=OptimSpec(eps=-1.0)), "optim.eps"),
    (dict(diverge_loss=-1.0), "diverge_loss"),
    (dict(seed="x"), "seed"),
    (dict(precision="fp8"), "precision"),
    (dict(knowledge_eval=True), "knowledge_eval"),  # pcfg has no facts to measure
    (dict(model=ModelSpec(size="", d_model=64, n_layers=2)), "model.n_heads"),
    (dict(model=ModelSpec(d_model=60, n_heads=4)), "model.n_heads"),  # head_dim 15: odd
    (dict(model=ModelSpec(n_layers=-1)), "model.n_layers"),
]
RUN_BAD = [
    (dict(eval_every=0), "eval_every"),
    (dict(device="tpu"), "device"),
    (dict(micro_batch_size=5), "micro_batch_size"),  # does not divide 32
    (dict(workers=3), "batch_size"),  # 32 sequences over 3 workers
    (dict(fsdp="yes"), "fsdp"),
    (dict(cpus_per_worker=0), "cpus_per_worker"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
def test_bad_values_raise_one_line_error_naming_the_field(change, field):
    with pytest.raises(SpecError) as e:
        dataclasses.replace(TrialSpec(), **change).validate()
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg


@pytest.mark.parametrize("change,field", RUN_BAD, ids=[f for _, f in RUN_BAD])
def test_bad_placement_raises_one_line_error_naming_the_field(change, field):
    with pytest.raises(SpecError) as e:
        Trial(TrialSpec(), RunConfig(**change)).validate()
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg


def test_identity_excludes_placement_and_labels():
    """The hash covers what is measured; where and how often it runs is not in it."""
    spec = TrialSpec(model=ModelSpec("150K"), total_steps=100)
    h = spec.content_hash()
    assert set(RUN_FIELDS).isdisjoint(spec.identity())
    for label in ("name", "study", "grid"):
        assert label not in spec.identity()
    assert dataclasses.replace(spec, name="x", study="s", grid={"seed": 0}).content_hash() == h
    for change in (
        dict(precision="bf16"),
        dict(eval_batch_size=32),
        dict(ewa_decay=0.9),
        dict(optim=OptimSpec(lr=1e-3)),
        dict(total_steps=101),
    ):
        assert dataclasses.replace(spec, **change).content_hash() != h, change
    # a preset and the same shape written out are the same trial
    explicit = ModelSpec(size="", d_model=64, n_layers=3, n_heads=4)
    assert dataclasses.replace(spec, model=explicit).content_hash() == h
    assert dataclasses.replace(spec, model=ModelSpec("150K", n_layers=4)).content_hash() != h


def test_trial_routes_fields_and_round_trips():
    t = Trial(TrialSpec(batch_size=16)).replace(workers=2, eval_every=5, seed=3)
    assert (t.run.workers, t.run.eval_every, t.spec.seed) == (2, 5, 3)
    assert Trial.from_json(t.to_json()) == t
    assert Trial.from_json(TrialSpec().to_json()).run == RunConfig()  # a bare spec file
    with pytest.raises(SpecError, match=r"^colour: unknown field"):
        t.replace(colour=1)
    with pytest.raises(SpecError, match="placement"):  # an old spec with placement inside
        TrialSpec.from_dict({"workers": 2})


def test_model_shape_fields_resolve_over_the_preset():
    from scalelab.model import args_from_spec, flops_per_token, param_counts

    m = ModelSpec("150K", n_layers=6, mlp_hidden=128)
    assert m.shape() == {"d_model": 64, "n_layers": 6, "n_heads": 4} and m.label == "d64L6H4"
    args = args_from_spec(m, data_vocab=6, seq_len=32)
    d, L, h = 64, 6, 128
    # per block 4d² (attention) + 2·d·h (MLP) + 2d (norms); final norm d; embedding V·d
    assert param_counts(args)["non_embedding"] == L * (4 * d * d + 2 * d * h + 2 * d) + d
    assert (
        flops_per_token(args) == 6 * (param_counts(args)["non_embedding"] + 6 * d) + 12 * L * d * 32
    )
    padded = args_from_spec(ModelSpec("150K", vocab_size=128), data_vocab=6, seq_len=32)
    assert padded.vocab_size == 128
    with pytest.raises(ValueError, match="model.vocab_size"):
        args_from_spec(ModelSpec("150K", vocab_size=4), data_vocab=6, seq_len=32)


def test_unknown_json_field_is_named():
    with pytest.raises(SpecError, match=r"^optim\.momentum: unknown field"):
        TrialSpec.from_dict({"optim": {"momentum": 0.9}})
