"""The hyperparameter study (experiments/hparams.py): its design as expanded, the shared
prefixes of each (shape, batch, LR)'s horizons, the bad-design errors, the follow-up's
neighbourhood and its scoring. No training."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from scalelab import prefix, study
from scalelab.sweep import expand

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hp():
    return study.load(REPO / "experiments" / "hparams.py")


def _key(t):
    s = t.spec
    return (s.model.d_model, s.model.n_layers, s.model.n_heads, s.batch_size, s.optim.lr)


def test_quick_preset_is_the_full_grid(hp):
    d, trials = hp.QUICK, expand(hp.SPEC)
    assert hp.PRESETS["quick"] is hp.SPEC and hp.SPEC.name == d.name
    assert len(d.shapes) >= 3 and len(d.horizons) >= 3
    assert len(d.batch_sizes) >= 4 and len(d.lr_steps) >= 5
    assert len(trials) == len(d.shapes) * len(d.horizons) * len(d.batch_sizes) * len(d.lr_steps)
    assert len({t.name for t in trials}) == len(trials)
    seen = defaultdict(set)
    for t in trials:
        s = t.spec
        shape = (s.model.d_model, s.model.n_layers, s.model.n_heads)
        assert shape in d.shapes and s.batch_size in d.batch_sizes
        assert s.optim.lr in d.lrs(shape, s.batch_size)
        assert s.data.name == "pcfg" and s.seq_len == d.seq_len
        assert s.total_tokens in d.horizons  # every batch size trains exactly D tokens
        seen[_key(t)].add(s.total_tokens)
    assert all(v == set(d.horizons) for v in seen.values())
    assert len(seen) == len(d.shapes) * len(d.batch_sizes) * len(d.lr_steps)


def test_horizons_share_their_prefix(hp):
    """Per (shape, B, η): one WSD run per horizon, same warmup and peak; the longest trains
    the prefix, every shorter one forks from it one update after its own cooldown starts."""
    d, trials = hp.QUICK, expand(hp.SPEC)
    plan = prefix.plan(trials)
    groups = defaultdict(list)
    for t in trials:
        groups[_key(t)].append(t)
    for ts in groups.values():
        ts.sort(key=lambda t: t.spec.total_steps)
        trunk = ts[-1]
        assert trunk.name not in plan.forks
        assert {t.spec.schedule.warmup_steps for t in ts} == {d.warmup(trunk.spec.batch_size)}
        for t in ts[:-1]:
            f = plan.forks[t.name]
            steps = t.spec.total_steps
            assert f.parent == trunk.name
            assert f.step == steps - round(d.cooldown_frac * steps) + 1
    trained, full = plan.trained_steps(), plan.scratch_steps()
    n_short = sum(
        (lambda n: n - round(d.cooldown_frac * n) + 1)(t.spec.total_steps)
        for ts in groups.values()
        for t in ts[:-1]
    )
    assert trained == full - n_short


def test_lr_ladder_and_warmup(hp):
    d = hp.QUICK
    for s in d.shapes:
        for b in d.batch_sizes:
            lrs = d.lrs(s, b)
            assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs)
            ratios = [y / x for x, y in zip(lrs, lrs[1:], strict=False)]
            assert all(abs(r / d.lr_ratio - 1) < 0.01 for r in ratios)
    for b in d.batch_sizes:
        short = d.steps(min(d.horizons), b)
        assert d.min_warmup <= d.warmup(b) < short * (1 - d.cooldown_frac)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"horizons": (1 << 18, 1 << 18)}, "horizons"),
        ({"horizons": (1 << 18,)}, "horizons"),
        ({"horizons": (1 << 18, (1 << 19) + 64)}, "horizons"),
        ({"batch_sizes": (16, 8, 32)}, "batch_sizes"),
        ({"batch_sizes": (8, 16)}, "batch_sizes"),
        ({"batch_sizes": (1, 2, 4, 2048)}, "batch_sizes"),
        ({"shapes": ((32, 2, 4),)}, "shapes"),
        ({"shapes": ((16, 2, 2), (30, 2, 4))}, "shapes"),
        ({"lr_steps": (0, 1)}, "lr_steps"),
        ({"lr_ref": -1.0}, "lr_ref"),
        ({"lr_ratio": 1.0}, "lr_ratio"),
        ({"cooldown_frac": 1.2}, "cooldown_frac"),
        ({"warmup_frac": 0.9}, "warmup_frac"),
        ({"final_lr": 1.0}, "final_lr"),
        ({"follow_up_seeds": (0,)}, "follow_up_seeds"),
        ({"tolerance": 0.0}, "tolerance"),
    ],
)
def test_bad_design_names_the_field(hp, change, field):
    bad = dataclasses.replace(hp.QUICK, **change)
    with pytest.raises(ValueError, match=rf"^{field}: ") as e:
        hp.sweep(bad)
    assert "\n" not in str(e.value)


def test_follow_up_target_must_leave_the_grid(hp):
    d = hp.QUICK
    assert d.target_shape not in d.shapes or d.target_tokens not in d.horizons
    inside = dataclasses.replace(d, follow_up_shape=d.shapes[0], follow_up_tokens=max(d.horizons))
    with pytest.raises(ValueError, match=r"^follow_up_shape: "):
        hp.sweep(inside)


def _proposal(hp, d, lr=4e-3, batch_seqs=10):
    """A proposal as propose() writes it, without the fit's predicted penalties."""
    return {
        "lr": lr,
        "batch_seqs": batch_seqs,
        "neighbourhood": hp.neighbourhood(d, lr, batch_seqs),
    }


def test_follow_up_is_the_proposal_and_its_neighbourhood(hp, tmp_path):
    d = hp.QUICK
    spec = hp.follow_up_spec(d, _proposal(hp, d), tmp_path / d.name)
    trials = expand(spec)
    seeds = d.follow_up_seeds
    assert len(seeds) >= 3 and len(trials) == 9 * len(seeds)
    assert spec.storage == str(tmp_path / f"{d.name}_follow_up")
    points = defaultdict(set)
    for t in trials:
        s = t.spec
        assert (s.model.d_model, s.model.n_layers, s.model.n_heads) == d.target_shape
        assert s.seed == s.data.seed and s.seed in seeds
        assert s.total_steps == d.target_tokens // s.tokens_per_step
        assert s.schedule.warmup_steps == d.warmup(s.batch_size)
        points[(s.optim.lr, s.batch_size)].add(s.seed)
    assert {b for _, b in points} == {5, 10, 20}
    assert {lr for lr, _ in points} == {2e-3, 4e-3, 8e-3}
    assert all(v == set(seeds) for v in points.values())


def _follow_runs(d, loss):
    """A follow-up runs table with the losses loss(f_lr, f_b, seed) (no training)."""
    rows = []
    for f_lr in hp_factors():
        for f_b in hp_factors():
            for s in d.follow_up_seeds:
                rows.append(
                    {"lr": float(f"{4e-3 * f_lr:.3g}"), "batch_size": round(10 * f_b), "seed": s,
                     "status": "completed", "final_eval_loss": loss(f_lr, f_b, s)}
                )  # fmt: skip
    return pl.DataFrame(rows)


def hp_factors():
    return (0.5, 1.0, 2.0)


def test_score_pairs_each_neighbour_with_the_proposal(hp):
    d = hp.QUICK

    def bowl(f_lr, f_b, seed):  # the proposal is the minimum; a seed shifts every point
        return 0.5 + 0.01 * math.log2(f_lr) ** 2 + 0.004 * math.log2(f_b) ** 2 + 0.001 * seed

    sc = hp.score(d, _proposal(hp, d), _follow_runs(d, bowl))
    assert sc["best"] == "proposal" and sc["gap"] == 0 and sc["within_tolerance"]
    comps = {c.baseline: c for c in sc["paired"].comparisons}
    assert set(comps) == {hp.role(a, b) for a in hp_factors() for b in hp_factors()} - {"proposal"}
    assert comps["η×2 B×1"].mean == pytest.approx(-0.01)
    assert comps["η×1 B×0.5"].mean == pytest.approx(-0.004)
    assert all(c.n == len(d.follow_up_seeds) for c in comps.values())

    def tilted(f_lr, f_b, seed):  # the best point is η×2: the proposal is 2% worse
        return 0.5 * (1 + 0.02 * (f_lr != 2)) + 0.001 * seed

    sc = hp.score(d, _proposal(hp, d), _follow_runs(d, tilted))
    assert sc["best"].startswith("η×2") and not sc["within_tolerance"]
    assert sc["gap"] == pytest.approx(0.02, rel=0.01)
