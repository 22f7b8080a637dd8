"""The prefix tree (scalelab.prefix) from the specs alone: which trials share which updates,
which fields may differ between a trunk and its branches, and how many steps a study trains.
No training here (tests/test_prefix_fork.py trains both ways and compares bit for bit)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from scalelab import prefix, study
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec, expand

REPO = Path(__file__).resolve().parents[1]
H = 100  # horizon of the WSD cooldown family
BASE = TrialSpec(
    model=ModelSpec("50K"),
    optim=OptimSpec(lr=3e-3),
    data=DataSpec("pcfg"),
    batch_size=8,
    seq_len=32,
    total_steps=H,
)
RUN = RunConfig(eval_every=10, device="cpu")


def cooldowns(fracs=(0.1, 0.2, 0.3, 0.4, 0.5), shapes=("linear", "1-sqrt")) -> list[ScheduleSpec]:
    """The constant run and WSD cooldowns of `fracs` of the horizon, in each shape."""
    out = [ScheduleSpec("constant", 5)]
    for shape in shapes:
        out += [
            ScheduleSpec("wsd", 5, {"decay_frac": f, "shape": shape, "final_lr": 3e-4})
            for f in fracs
        ]
    return out


def _trials(points: list[dict], base=BASE, run=RUN):
    return expand(SweepSpec("t", base, points=points, run=run))


def test_quickstart_trains_0633_of_its_steps():
    """The issue's count, per model: cosine 600 + shared 400 + step drop 200 + 81 shared by
    constant and WSD + WSD 119 + constant 119 = 1,519 of 2,400."""
    qs = study.load(REPO / "experiments" / "quickstart.py")
    trials = expand(qs.SPEC)
    p = prefix.plan(trials)
    assert p.trained_steps() == 2 * 1519 and p.scratch_steps() == 2 * 2400
    assert round(p.trained_steps() / p.scratch_steps(), 3) == 0.633
    by = {(t.spec.grid["model.size"], t.spec.schedule.name): t.name for t in trials}
    for size in ("50K", "150K"):
        const = by[size, "constant"]
        assert p.forks[by[size, "wsdcon"]] == prefix.Fork(by[size, "wsdcon"], const, 400)
        assert p.forks[by[size, "wsd"]] == prefix.Fork(by[size, "wsd"], const, 481)
        assert by[size, "cosine"] not in p.forks  # 31 shared warmup updates: < 10% of 600
        assert p.fork_steps[const] == [400, 481] and p.depth[by[size, "wsd"]] == 1
    assert "trains 3,038 of 4,800 trial steps (63%); 4 forks, 2 trunks" == p.summary()
    # with no threshold the warmup is shared too
    assert prefix.plan(trials, min_fork_frac=0).trained_steps() == 2 * (1519 - 31)


def test_wsd_cooldown_family_trains_12_of_33_horizons():
    """bench/prefix_share.py's study: constant + cooldowns of 10-50% in two shapes, 3 seeds.
    Per seed the constant run trains H and each cooldown only its own updates: 2 x (0.1 + ...
    + 0.5) H = 3 H, less one update each, as a cooldown's first update still uses the peak LR
    (schedules.lr_array) and so is shared too."""
    trials = _trials([{"schedule": s, "seed": k} for k in range(3) for s in cooldowns()])
    p = prefix.plan(trials)
    assert len(trials) == 33 and p.scratch_steps() == 33 * H
    assert p.trained_steps() == 12 * H - 30
    assert {p.depth[t.name] for t in trials} == {0, 1}  # one wave of branches
    trunks = {f.parent for f in p.forks.values()}
    assert {n for n in trunks} == {t.name for t in trials if t.spec.schedule.name == "constant"}
    const = trials[0].spec.lr_array()
    for t in trials:
        if t.name in p.forks:  # forks where its LR first leaves the constant's
            first = int(np.flatnonzero(t.spec.lr_array() != const)[0])
            start = round(H * (1 - t.spec.schedule.params["decay_frac"]))
            assert p.forks[t.name].step == first and first in (start, start + 1)


def test_wsd_horizons_fork_from_the_longest_run():
    """WSD to several token budgets (Hägele et al. 2024): the stable phase is shared across
    total_steps, so each horizon's cooldown is all it trains."""
    wsd = ScheduleSpec("wsd", 5, {"decay_frac": 0.2, "shape": "linear", "final_lr": 3e-4})
    trials = _trials([{"schedule": wsd, "total_steps": n} for n in (100, 200, 400)])
    p = prefix.plan(trials)
    steps = {t.spec.total_steps: t.name for t in trials}
    assert steps[400] not in p.forks
    # the first cooldown update still uses the peak LR: the fork is one update later
    assert p.forks[steps[100]].step == 81 and p.forks[steps[200]].step == 161
    assert p.forks[steps[100]].parent == p.forks[steps[200]].parent == steps[400]
    assert p.trained_steps() == 400 + 19 + 39


IDENTITY_CHANGES = {
    "model": {"model.size": "150K"},
    "model.mlp": {"model.mlp": "gated"},
    "optim.lr": {"optim.lr": 1e-3},
    "optim.weight_decay": {"optim.weight_decay": 0.0},
    "optim.beta2": {"optim.beta2": 0.99},
    "optim.grad_clip": {"optim.grad_clip": 0.5},
    "data.seed": {"data.seed": 1},
    "batch_size": {"batch_size": 16},
    "seq_len": {"seq_len": 16},
    "seed": {"seed": 1},
    "eval_batch_size": {"eval_batch_size": 32},
    "ewa_decay": {"ewa_decay": 0.99},
    "diverge_loss": {"diverge_loss": 9.0},
    "precision": {"precision": "bf16"},
}


@pytest.mark.parametrize("field", list(IDENTITY_CHANGES))
def test_an_identity_field_that_differs_shares_nothing(field):
    """Everything in the identity but the schedule and total_steps moves update 1."""
    a, b = cooldowns((0.2,), ("linear",))
    trials = _trials([{"schedule": a}, {"schedule": b, **IDENTITY_CHANGES[field]}])
    assert prefix.plan(trials).forks == {}
    same = _trials([{"schedule": a}, {"schedule": b}])
    assert len(prefix.plan(same).forks) == 1


@pytest.mark.parametrize("field", ["schedule", "schedule.params", "total_steps"])
def test_schedule_fields_may_differ_while_the_lr_arrays_agree(field):
    """The schedule and total_steps only matter through the per-update LR array: a trunk and
    a branch may differ in them and still share the updates whose LR is equal bit for bit."""
    wsd = {"decay_frac": 0.2, "shape": "linear", "final_lr": 3e-4}
    first, other = {
        "schedule": (ScheduleSpec("constant", 5), ScheduleSpec("wsdcon", 5, {"drop_step": 60, "value": 3e-4})),
        "schedule.params": (ScheduleSpec("wsd", 5, wsd), ScheduleSpec("wsd", 5, wsd | {"decay_frac": 0.4})),
        "total_steps": (ScheduleSpec("constant", 5), ScheduleSpec("constant", 5)),
    }[field]  # fmt: skip
    extra = {"total_steps": 300} if field == "total_steps" else {}
    trials = _trials([{"schedule": first}, {"schedule": other, **extra}])
    a, b = (t.spec.lr_array() for t in trials)
    n = min(a.size, b.size)
    shared = int(np.flatnonzero(a[:n] != b[:n])[0]) if np.any(a[:n] != b[:n]) else n - 1
    p = prefix.plan(trials, min_fork_frac=0)
    (fork,) = p.forks.values()
    assert fork.step == shared
    assert shared >= 50  # a real shared stretch, not only the warmup
    # the branch is the trial that leaves the shared path: the longer run continues
    assert p.total_steps[fork.parent] >= p.total_steps[fork.name]


def test_a_different_warmup_shares_at_most_the_first_update():
    trials = _trials([{"schedule": ScheduleSpec("constant", 5)},
                      {"schedule": ScheduleSpec("constant", 50)}])  # fmt: skip
    a, b = (t.spec.lr_array() for t in trials)
    assert np.flatnonzero(a != b)[0] <= 1
    assert prefix.plan(trials).forks == {}


def test_run_fields_that_move_numbers_or_rows_split_the_tree():
    """RunConfig fields in NEUTRAL_RUN change no number (a forked trial's curve is the same);
    every other one (ranks, micro-batches, threads, the noise probe, cadence, device, compile,
    AC) is part of the trunk key."""
    a, b = cooldowns((0.2,), ("linear",))
    values = {
        "workers": 2,
        "fsdp": True,
        "micro_batch_size": 4,
        "cpus_per_worker": 2.0,
        "gpus_per_worker": 0.5,
        "device": "cuda",
        "eval_every": 5,
        "log_every": 2,
        "noise_every": 0,
        "checkpoint_every": 10,
        "wandb_rows": 0,
        "compile": True,
        "activation_checkpointing": True,
    }
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"share_prefixes"}
    assert set(values) == fields, "a new RunConfig field: say here whether it moves numbers"
    for name, v in values.items():
        trials = _trials([{"schedule": a}, {"schedule": b, name: v}])
        shared = bool(prefix.plan(trials).forks)
        assert shared == (name in prefix.NEUTRAL_RUN), name


def test_share_prefixes_off_and_too_short_stretches_share_nothing():
    a, b = cooldowns((0.2,), ("linear",))
    off = RunConfig(eval_every=10, device="cpu", share_prefixes=False)
    assert prefix.plan(_trials([{"schedule": a}, {"schedule": b}], run=off)).forks == {}
    # cooldown of 95%: 5 shared updates of 100 (< 10%) train again rather than fork
    late = ScheduleSpec("wsd", 2, {"decay_frac": 0.95, "shape": "linear", "final_lr": 3e-4})
    assert prefix.plan(_trials([{"schedule": a}, {"schedule": late}])).forks == {}


def test_the_path_with_most_branchings_continues_so_the_tree_stays_shallow():
    """Step drops at 20, 40, 60, 80 of a constant run: every one forks from the constant run
    (depth 1), none from another drop."""
    drops = [ScheduleSpec("wsdcon", 5, {"drop_step": d, "value": 3e-4}) for d in (20, 40, 60, 80)]
    trials = _trials([{"schedule": s} for s in [*drops, ScheduleSpec("constant", 5)]])
    p = prefix.plan(trials)
    const = trials[-1].name
    assert {f.parent for f in p.forks.values()} == {const}
    assert p.fork_steps[const] == [20, 40, 60, 80] and max(p.depth.values()) == 1
    assert p.trained_steps() == 100 + 80 + 60 + 40 + 20


def test_shared_prefixes_summary_counts_own_updates_from_the_runs_table():
    """scalelaws.study.summary.shared_prefixes on a runs table: steps trained = steps_done less
    the fork step (never below 0: a branch ended by its trunk's divergence trained nothing)."""
    import polars as pl

    from scalelaws.study.summary import shared_prefixes

    runs = pl.DataFrame(
        {
            "trial": ["const", "drop", "wsd", "cos", "dead"],
            "steps_done": [600, 600, 600, 600, 12],
            "forked_from": [None, "const", "const", None, "const"],
            "fork_step": [None, 400, 481, None, 400],
        }
    )
    line, tree = shared_prefixes(runs)
    assert line == ("shared prefixes: trained 1,519 of 2,412 trial steps (63%); 3 forks, 1 trunk")
    assert tree["trial"].to_list() == ["dead", "drop", "wsd"]
    assert tree["own_steps"].to_list() == [0, 200, 119]
    assert shared_prefixes(runs.with_columns(fork_step=pl.lit(None, pl.Int64))) is None
    assert shared_prefixes(runs.drop("fork_step", "forked_from")) is None


def test_waves_put_every_trunk_before_its_branches_in_trunk_order():
    """The Tuner's grid order (forks.waves): trunks, then branches ordered by their trunk's
    place and fork step; a branch of a trunk that is not pending comes first."""
    from scalelab.launch import forks

    trials = _trials([{"schedule": s, "seed": k} for k in range(2) for s in cooldowns()])
    plan = prefix.plan(trials)
    levels = forks.waves(trials, plan)
    assert [len(x) for x in levels] == [2, 20]
    trunk_pos = {t.name: i for i, t in enumerate(levels[0])}
    keys = [(trunk_pos[plan.forks[t.name].parent], plan.forks[t.name].step) for t in levels[1]]
    assert keys == sorted(keys)
    done = levels[0][0].name  # trunk 0 finished earlier: its branches move to the first level
    pending = [t for t in trials if t.name != done]
    assert [len(x) for x in forks.waves(pending, plan)] == [11, 10]


def _waiting_branch(tmp_path: Path, launch_id: str = "now") -> dict:
    trunk = tmp_path / "trunk"
    trunk.mkdir()
    fork = {"path": str(trunk / "forks" / "step_40"), "trial": "trunk", "content_hash": "h",
            "step": 40}  # fmt: skip
    return {"fork_wait": {**fork, "trunk_dir": str(trunk), "launch_id": launch_id}}


def _trunk_record(cfg: dict, **rec) -> None:
    from scalelab import files

    files.write_json(Path(cfg["fork_wait"]["trunk_dir"]) / "trial.json", rec)


def test_a_branch_waits_for_the_fork_checkpoint_not_for_a_record_of_an_earlier_run(tmp_path):
    """A failed trunk record left by an earlier launch is no reason to stop waiting; the
    checkpoint's meta.json (written last) is the signal to start, from that checkpoint."""
    import threading

    from scalelab.launch.trial import _await_fork

    cfg = _waiting_branch(tmp_path)
    _trunk_record(cfg, status="failed", launch_id="before")
    out: list[bool] = []
    waiter = threading.Thread(target=lambda: out.append(_await_fork(cfg)))
    waiter.start()
    waiter.join(timeout=1.0)  # four polls: still waiting on the stale record
    assert waiter.is_alive()
    _trunk_record(cfg, status="running", launch_id="now")
    ckpt = Path(cfg["fork_wait"]["path"])
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text("{}")
    waiter.join(timeout=30)
    assert out == [True]
    assert cfg["fork_from"] == {"path": str(ckpt), "trial": "trunk", "content_hash": "h",
                                "step": 40}  # fmt: skip


@pytest.mark.parametrize(
    "record, go",
    [
        ({"status": "failed"}, False),  # the driver ends it (or runs it after a retry)
        ({"status": "diverged", "diverged_step": 40}, False),  # diverged in the shared stretch
        ({"status": "diverged", "diverged_step": 41}, True),  # passed the fork: train it all
        ({"status": "completed"}, True),  # passed the fork, checkpoint lost: train it all
    ],
)
def test_a_branch_steps_aside_only_when_its_trunk_ended_before_the_fork(tmp_path, record, go):
    from scalelab.launch.trial import _await_fork

    cfg = _waiting_branch(tmp_path)
    _trunk_record(cfg, **record, launch_id="now")
    assert _await_fork(cfg) is go and "fork_from" not in cfg
