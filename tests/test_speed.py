"""Speed switches on CPU: compile wiring, activation checkpointing, fused AdamW on FSDP2
DTensors, one host sync per logged row, vocabulary padding (identity), RunConfig checks and
the concurrency arithmetic of fractional GPUs. The CUDA side is tests/test_gpu.py."""

from __future__ import annotations

import copy
import dataclasses

import polars as pl
import pytest
import torch

from scalelab import launch, speed
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    SpecError,
    Trial,
    TrialSpec,
)
from scalelab.launch import resources
from scalelab.model import GPT, ModelArgs, args_from_spec, flops_per_token, param_counts
from scalelab.train import train

CURVE = ["step", "tokens", "lr", "train_loss", "eval_loss", "grad_norm", "noise_scale"]


def tiny(**kw) -> Trial:
    spec = TrialSpec(
        name="t",
        model=ModelSpec("6K"),
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("cosine", warmup_steps=3),
        data=DataSpec("pcfg"),
        batch_size=8,
        seq_len=32,
        total_steps=12,
        eval_batch_size=8,
    )
    return Trial(spec, RunConfig(eval_every=6, noise_every=2)).replace(**kw)


def _curve(d) -> pl.DataFrame:
    return pl.read_parquet(d / "curve.parquet")


@pytest.fixture
def one_rank_group(monkeypatch):
    """A one-rank gloo group in this process (FSDP2 on one CPU 'device'), torn down after."""
    import torch.distributed as dist

    from scalelab import parallel

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(parallel._free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


# ---- RunConfig: the switches are placement, checked in one line ----

RUN_BAD = [
    (dict(compile="yes"), "compile"),
    (dict(compile=1), "compile"),  # 1 == True in Python: still refused, say true
    (dict(activation_checkpointing="no"), "activation_checkpointing"),
    (dict(gpus_per_worker=1.5), "gpus_per_worker"),
    (dict(gpus_per_worker=0.5, workers=2), "gpus_per_worker"),  # NCCL: one GPU per rank
]


@pytest.mark.parametrize("change,field", RUN_BAD, ids=[f"{f}={v}" for v, f in RUN_BAD])
def test_bad_speed_placement_is_one_line_naming_the_field(change, field):
    with pytest.raises(SpecError) as e:
        Trial(TrialSpec(), RunConfig(**change)).validate()
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg, msg


def test_speed_switches_are_placement_not_identity():
    t = Trial(TrialSpec())
    fast = t.replace(compile=True, activation_checkpointing=True, gpus_per_worker=0.25)
    fast.validate()
    assert fast.content_hash() == t.content_hash()
    assert Trial.from_json(fast.to_json()) == fast
    assert Trial.from_dict({"spec": {}, "run": {"compile": False}}).run.compile is False
    assert RunConfig.from_dict({}).compile == "auto"  # trial.json written before the field
    assert speed.compile_on("auto", torch.device("cpu")) is False
    assert speed.compile_on("auto", torch.device("cuda")) is True
    assert speed.compile_on(True, torch.device("cpu")) is True


def test_tf32_switch_leaves_every_precision_getter_readable():
    """What enable_tf32 does on CUDA, done here: inductor reads the matmul precision when it
    compiles, and a half-set TF32 state makes that read raise."""
    before = torch.get_float32_matmul_precision()
    try:
        speed.enable_tf32(torch.device("cuda"))  # only sets flags: no GPU needed
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is True
        speed.enable_tf32(torch.device("cpu"))  # no-op
    finally:
        torch.set_float32_matmul_precision(before)
    assert torch.backends.cuda.matmul.allow_tf32 is False


# ---- packing trials on one GPU: Ray's arithmetic, no Ray needed ----


@pytest.mark.parametrize("gpus,fits", [(1.0, 1), (0.5, 2), (0.25, 4), (0.2, 5), (0.1, 10)])
def test_fractional_gpus_pack_trials_on_one_gpu(gpus, fits):
    trials = [tiny(gpus_per_worker=gpus, seed=s) for s in range(12)]
    assert launch.concurrency(trials, {"CPU": 16, "GPU": 1}) == fits  # floats: 1 // 0.2 == 4
    assert launch.concurrency(trials, {"CPU": 16, "GPU": 2}) == min(16, 2 * fits)
    assert launch.concurrency(trials, {"CPU": 3, "GPU": 1}) == min(3, fits)  # 1 CPU each
    # the trial actor itself asks Ray for the fraction (one-worker trials train in it)
    cfg = {"trial": {"trials": [{"spec": trials[0].to_json()}], "driver_resources": {}}}
    assert resources._trial_resources(cfg) == {"cpu": 1.0, "gpu": gpus}
    assert launch.footprint(trials[0]) == {"CPU": 1.0, "GPU": gpus}


def test_a_trial_that_needs_a_gpu_does_not_fit_a_cpu_cluster():
    with pytest.raises(SpecError, match="no node can hold one trial: it needs GPU = 0.25"):
        launch.concurrency([tiny(gpus_per_worker=0.25)], {"CPU": 16})


# ---- vocabulary padding: identity, and the counts it changes ----


def test_vocab_multiple_pads_the_vocabulary_and_is_identity():
    base = ModelSpec("150K")
    padded = dataclasses.replace(base, vocab_multiple=128)
    a, b = args_from_spec(base, 50257, 1024), args_from_spec(padded, 50257, 1024)
    assert (a.vocab_size, b.vocab_size) == (50257, 50304)  # 393 · 128 (nanoGPT's 50304)
    assert args_from_spec(padded, 128, 64).vocab_size == 128  # a multiple already
    assert args_from_spec(dataclasses.replace(padded, vocab_size=200), 6, 64).vocab_size == 256
    # the extra rows are embedding (and softmax) rows: 47 · d parameters, 6 · 47 · d FLOPs
    d = a.d_model
    pa, pb = param_counts(a), param_counts(b)
    assert pb["non_embedding"] == pa["non_embedding"]
    assert pb["embedding"] - pa["embedding"] == 47 * d
    assert flops_per_token(b) - flops_per_token(a) == 6 * 47 * d
    # it changes what is measured, so it changes the hash; 0 keeps the hash it had before
    spec = TrialSpec()
    assert spec.content_hash() == "a6f002fc"  # as before the field existed (HEAD 424fae4)
    assert dataclasses.replace(spec, model=padded).content_hash() != spec.content_hash()
    with pytest.raises(SpecError, match=r"^model\.vocab_multiple"):
        dataclasses.replace(spec, model=ModelSpec(vocab_multiple=-8)).validate()


def test_padded_vocabulary_trains_with_the_extra_rows(tmp_path):
    rec = train(tiny(model=ModelSpec("6K", vocab_multiple=64), total_steps=4), tmp_path)
    v = rec["data"]["vocab_size"]
    assert rec["shape"]["vocab_size"] == 64 * -(-v // 64) > v
    assert rec["params"]["embedding"] == rec["shape"]["vocab_size"] * rec["shape"]["d_model"]
    assert rec["status"] == "completed"


# ---- activation checkpointing: same numbers ----


def test_activation_checkpointing_gives_the_same_loss_and_grads():
    torch.manual_seed(0)
    ref = GPT(ModelArgs(vocab_size=40, d_model=32, n_layers=3, n_heads=4, seq_len=16))
    ac = copy.deepcopy(ref)
    speed.apply_ac(ac)
    assert type(ac.blocks[0]).__name__ == "CheckpointWrapper"
    assert list(ac.state_dict()) == list(ref.state_dict())  # checkpoints load either way
    idx = torch.randint(0, 40, (4, 17))
    losses = []
    for m in (ref, ac):
        _, loss = m(idx[:, :-1], idx[:, 1:])
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (name, p), q in zip(ref.named_parameters(), ac.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


def test_activation_checkpointing_through_the_trainer_gives_the_same_curve(tmp_path):
    train(tiny(), tmp_path / "ref")
    rec = train(tiny(activation_checkpointing=True), tmp_path / "ac")
    assert rec["speed"]["activation_checkpointing"] is True
    assert _curve(tmp_path / "ref").select(CURVE).equals(_curve(tmp_path / "ac").select(CURVE))


# ---- torch.compile: the wiring, with a backend that needs no C++ build ----


def test_compile_wiring_trains_and_matches_eager(tmp_path, monkeypatch):
    """aot_eager traces each block through dynamo and AOTAutograd (the path inductor takes)
    but runs the traced aten ops eagerly: the wiring, not inductor's code generation."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    ref = train(tiny(), tmp_path / "ref")
    rec = train(tiny(compile=True, activation_checkpointing=True), tmp_path / "c")
    assert rec["speed"]["compile"] is True and ref["speed"]["compile"] is False
    a, b = _curve(tmp_path / "ref"), _curve(tmp_path / "c")
    assert a["step"].to_list() == b["step"].to_list()
    for col in ("train_loss", "grad_norm"):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        assert abs(x - y).max() < 1e-4 * abs(x).max(), (col, x, y)


def test_compile_blocks_then_fsdp2_with_fused_adamw(tmp_path, monkeypatch, one_rank_group):
    """The CUDA order on CPU: checkpoint wrapper, compiled block, fully_shard on top, and
    fused AdamW stepping FSDP2 DTensor parameters (the fused kernel exists on CPU too)."""
    from torch.distributed.tensor import DTensor

    from scalelab.train.trainer import setup

    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(speed, "adamw_kwargs", lambda params: {"fused": True})
    trial = tiny(fsdp=True, compile=True, activation_checkpointing=True)
    s, facts = setup(trial)
    assert facts["speed"]["fused_adamw"] and facts["speed"]["compile"]
    assert all(isinstance(p, DTensor) for p in s.params)
    assert isinstance(s.model.blocks[0], torch._dynamo.eval_frame.OptimizedModule)
    assert s.opt.defaults["fused"]
    rec = train(trial, tmp_path)  # fused AdamW steps the DTensors 12 times
    assert rec["status"] == "completed" and rec["world_size"] == 1
    assert rec["speed"]["fused_adamw"] and rec["speed"]["activation_checkpointing"]
    assert _curve(tmp_path)["train_loss"].is_finite().all()


# ---- no per-step host sync: one read per logged row, same numbers ----


def test_scalars_are_read_once_per_logged_row_and_match(tmp_path, monkeypatch):
    from scalelab.train import trainer

    reads = []
    real = trainer.read_all

    def counting(stats):
        reads.append(len(stats))
        real(stats)

    ref = train(tiny(log_every=1), tmp_path / "every")
    monkeypatch.setattr(trainer, "read_all", counting)
    train(tiny(log_every=4), tmp_path / "sparse")
    assert reads == [4, 2, 2, 4]  # rows at steps 4, 6 (eval), 8, 12 (eval, last)
    a = _curve(tmp_path / "every").filter(pl.col("step").is_in([4, 6, 8, 12]))
    b = _curve(tmp_path / "sparse")
    assert b["step"].to_list() == [4, 6, 8, 12]
    assert a.select(CURVE).equals(b.select(CURVE))
    assert ref["status"] == "completed"


def test_divergence_found_at_a_logged_row_names_the_first_bad_step(tmp_path):
    boom = dict(
        optim=OptimSpec(lr=50.0, grad_clip=0.0),
        schedule=ScheduleSpec("constant"),
        total_steps=40,
        model=ModelSpec("50K"),
    )
    every = train(tiny(**boom, log_every=1), tmp_path / "every")
    sparse = train(tiny(**boom, log_every=7, eval_every=40), tmp_path / "sparse")
    assert every["status"] == sparse["status"] == "diverged"
    assert sparse["diverged_step"] == every["diverged_step"]
    last = [_curve(tmp_path / d).select(CURVE).tail(1) for d in ("every", "sparse")]
    assert last[0].equals(last[1])
