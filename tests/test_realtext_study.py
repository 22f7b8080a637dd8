"""experiments/realtext.py: the design of both presets (no training)."""

from pathlib import Path

import pytest

from scalelab import prefix
from scalelab.study import load
from scalelab.sweep import expand

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "realtext.py"


@pytest.fixture(scope="module")
def rt():
    return load(STUDY)


def test_mpl_grid_is_sizes_by_the_quickstart_schedules(rt):
    trials = expand(rt.PRESETS["mpl"])
    assert rt.SPEC is rt.PRESETS["mpl"]
    assert len(trials) == len(rt.SIZES) * 4 == 12
    assert {t.spec.model.size for t in trials} == set(rt.SIZES)
    assert rt.FIT_SIZE in rt.SIZES
    per_size = {}
    for t in trials:
        per_size.setdefault(t.spec.model.size, set()).add(t.spec.schedule.name)
    assert all(s == {"constant", "cosine", "wsdcon", "wsd"} for s in per_size.values())
    assert set(rt.FIT_SCHEDULES) | {rt.TEST_SCHEDULE} == {"constant", "cosine", "wsdcon", "wsd"}
    assert rt.TEST_SCHEDULE not in rt.FIT_SCHEDULES
    assert {t.spec.total_steps for t in trials} == {rt.STEPS}
    assert len({t.name for t in trials}) == len(trials)


def test_both_presets_train_on_the_stdlib_with_its_eval_split(rt):
    for name, spec in rt.PRESETS.items():
        for t in expand(spec):
            data = t.spec.data
            assert data.name == "python_stdlib", name
            assert data.params == {"vocab_size": rt.VOCAB}, name  # default eval split
            t.validate()


def test_mpl_shares_prefixes_per_size(rt):
    """Per size the constant run is the trunk: wsdcon forks at its drop (700), WSD at the start
    of its decay (800); cosine leaves the constant after warmup and trains alone."""
    trials = expand(rt.PRESETS["mpl"])
    plan = prefix.plan(trials)
    by_name = {t.name: t for t in trials}
    forks = {by_name[n].spec.schedule.name: f for n, f in plan.forks.items()}
    assert len(plan.forks) == len(rt.SIZES) * 2
    for name, f in plan.forks.items():
        child, parent = by_name[name].spec, by_name[f.parent].spec
        assert parent.schedule.name == "constant"
        assert parent.model.size == child.model.size
        want = {"wsdcon": 700, "wsd": 800}[child.schedule.name]
        assert f.step in (want, want + 1), (child.schedule.name, f.step)
    assert "cosine" not in forks
    per_size = rt.STEPS + (rt.STEPS - 700) + (rt.STEPS - 800) + rt.STEPS
    assert abs(plan.trained_steps() - len(rt.SIZES) * per_size) <= 2 * len(rt.SIZES)


def test_cbs_preset_is_the_critical_batch_design_at_one_size(rt):
    d = rt.CBS
    assert d.sizes == ("150K",)
    assert d.name == "realtext_cbs" and d.name != rt.MPL.name
    cb = rt.critical_batch
    assert d.batch_sizes == cb.QUICK.batch_sizes
    assert cb.check(d) is d  # every D lands on an eval step at B_ref
    assert len(d.data_sizes) >= 4  # the fewest points a CBS-vs-D scaling fit accepts
    trials = expand(rt.PRESETS["cbs"])
    assert len(trials) == len(d.batch_sizes) * len(d.lr_steps) == 24
    grid = {(t.spec.batch_size, t.spec.optim.lr) for t in trials}
    assert len(grid) == len(trials)
    for t in trials:
        assert t.spec.schedule.name == "constant" and t.spec.ewa_decay > 0
    ref = [t for t in trials if t.spec.batch_size == d.ref_batch]
    assert {t.spec.total_steps * t.spec.tokens_per_step for t in ref} == {max(d.data_sizes)}
    assert prefix.plan(trials).forks == {}  # one constant LR per run: nothing to share


def test_report_helpers_name_the_synthetic_source(rt, tmp_path):
    """Without results/quickstart beside the study, the committed fixture is the comparison."""
    found = rt.synthetic_quickstart(tmp_path / "realtext")
    assert found is not None
    path, words = found
    assert path.is_file() and "fixture" in words


@pytest.mark.slow
def test_a_small_loop_runs_end_to_end(rt, tmp_path):
    """The MPL loop at toy size on the real corpus: 2 tiny models x the four schedules (scaled to
    200 steps), trained in this process, collected, then the study's own analysis and report."""
    import dataclasses

    from scalelab import launch, results
    from scalelab.config import ScheduleSpec
    from scalelab.sweep import SweepSpec
    from scalelab.train import train

    steps, warmup, peak = 200, 10, rt.PEAK
    schedules = [  # the study's four, at 200 steps
        ScheduleSpec("constant", warmup),
        ScheduleSpec("cosine", warmup, {"final_lr": peak / 10}),
        ScheduleSpec("wsdcon", warmup, {"drop_step": 140, "value": peak / 10}),
        ScheduleSpec("wsd", warmup, {"decay_frac": 0.2, "shape": "linear", "final_lr": peak / 10}),
    ]
    base = dataclasses.replace(
        rt.MPL.base, batch_size=8, seq_len=32, total_steps=steps, eval_batch_size=32
    )
    spec = SweepSpec(
        "realtext_small",
        base,
        run=dataclasses.replace(rt.MPL.run, eval_every=10),
        grid={"model.size": ["6K", "14K"], "schedule": schedules},
    )
    root = tmp_path / "realtext_small"
    root.mkdir()
    trials = expand(spec)
    launch.write_study_json(root, spec, trials)
    for t in trials:
        train(t, launch.trial_dir(root, t))
    results.collect(root)
    report = rt.mpl_after(root, spec, fit_size="14K")
    for name in ("mpl_fit.json", "mpl_fit_6K.json", "proposed_schedule.json", "report.md"):
        assert (root / name).is_file(), name
    assert "8 of 8 trials completed" in report
    assert "| wsd (held out) |" in report
    assert "fixture" in report  # no results/quickstart beside tmp_path
