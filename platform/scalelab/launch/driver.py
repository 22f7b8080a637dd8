"""Ray glue only: run a SweepSpec as one Ray Tune Tuner over a function trainable.

One-worker trials train inside the trial process. Multi-worker trials build a TorchTrainer
inside the trial (Ray Train V2: `Tuner(TorchTrainer)` is gone) whose metrics reach Tune via
TuneReportCallback. Every trial writes into `<study>/trials/<trial name>/`; a trial whose
trial.json says completed/diverged (same content hash) is skipped, so running a study again
resumes it, and an interrupted trial resumes from its last checkpoint. Trials that share
their first updates run in one Tuner, trunks first: a branch starts from its trunk's fork
checkpoint as soon as it exists (forks.py, scalelab.prefix). A branch whose trunk ended before
the fork steps aside; the driver then ends it saying why, or runs it in a second Tuner when a
retried trunk got there after all.
"""

from __future__ import annotations

import importlib
import shutil
import threading
import uuid
from pathlib import Path

import polars as pl

from scalelab import files, prefix, progress
from scalelab.config import SpecError
from scalelab.launch import forks
from scalelab.launch.folders import (
    check_not_legacy,
    is_done,
    study_dir,
    trial_dir,
    write_study_json,
)
from scalelab.launch.ray_session import connect, shutdown
from scalelab.launch.resources import _trial_resources, bundles, check_devices, concurrency
from scalelab.launch.trial import _trial_fn
from scalelab.sweep import SweepSpec, expand
from scalelab.tracking.runs import wandb_on
from scalelaws.study.load import has_tables


def run(
    spec: SweepSpec,
    *,
    storage: str | None = None,
    wandb_mode: str | None = "offline",
    show_progress: bool = True,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
) -> Path:
    """Run (or resume) a study; collect its tables; return the study folder."""
    from scalelab import results

    trials = expand(spec)  # validates every trial before anything starts
    root = study_dir(spec, storage)
    check_not_legacy(root)
    root.mkdir(parents=True, exist_ok=True)
    write_study_json(root, spec, trials)
    pending = [t for t in trials if not is_done(root, t)]
    by_name = {t.name: t for t in trials}
    plan = prefix.plan([] if spec.asha else trials)  # ASHA stops trials one by one: no trunks
    files.write_json(root / "prefix.json", plan.to_dict())
    if show_progress:
        print(
            f"study {spec.name}: {len(trials)} trials, {len(trials) - len(pending)} done, "
            f"{len(pending)} to run -> {root}"
        )
        if plan.forks and pending:
            trained, full = forks.trained_steps(pending, plan, root, by_name)
            counts = (len(plan.forks), len(plan.fork_steps))
            print(f"shared prefixes: {prefix.savings(trained, full, *counts)}")
    if pending:
        try:
            _tune(spec, pending, root, wandb_mode, show_progress, num_cpus, max_concurrent,
                  plan, by_name)  # fmt: skip
        finally:
            shutdown()
    if plan.forks and not spec.keep_forks:
        forks.clean(root, plan, by_name)
    if pending or not has_tables(root):  # nothing ran: the tables are current
        results.collect(root)
    if pending:  # the study's W&B analysis run, if W&B is on
        from scalelab.tracking.analysis_run import log_quietly

        if (run_dir := log_quietly(root, wandb_mode, "study")) and show_progress:
            print(f"\nW&B analysis run: {run_dir}")  # below the live table
    return root


def _warm(wandb: bool) -> None:
    importlib.import_module("ray.tune")
    if wandb:
        from scalelab.tracking.analysis_run import warm

        try:
            warm()
        except Exception:  # a broken W&B set-up is reported by the analysis run at the end
            pass


def _tune(spec, pending, root, wandb_mode, show_progress, num_cpus, max_concurrent, plan, by_name):
    # Tune's import (~1 s of CPU) runs while ray.init waits for Ray's processes to come up
    # (~4 s, about half of 2 cores idle): ray.init stays in the main thread, where it sets
    # its signals. With W&B on, the study's analysis run at the end is warmed up there too.
    importing = threading.Thread(target=_warm, args=(wandb_on(wandb_mode),))
    importing.start()
    # Tune's experiment state is kept for the last run only: a rerun resumes from each
    # trial.json, and every run would add one more file (several MB for a few hundred trials)
    shutil.rmtree(root / "_ray", ignore_errors=True)
    try:
        resources = connect(pending, num_cpus)
    finally:
        importing.join()

    try:
        check_devices(pending, resources)
        n = concurrency(pending, resources, spec.driver_resources)
    except SpecError as e:
        if not resources.get("_joined"):
            raise  # a local Ray never grows: refuse before any trial starts
        # a cluster's autoscaler starts nodes for pending demands: say what is awaited
        print(f"waiting for the autoscaler: {e}", flush=True)
        n = len(pending)
    n = min(max_concurrent or n, len(pending))
    view = progress.Live(root, pending, concurrency=n) if show_progress else None
    stop = threading.Event()
    thread = threading.Thread(target=view.loop, args=(stop,), daemon=True) if view else None
    if thread:
        thread.start()
    launch_id = uuid.uuid4().hex  # marks the trial.json records this run writes
    try:
        todo, i, tried = forks.end_orphans(root, pending, plan, by_name), 0, set()
        # a branch that never writes a record (its process dies before) would come back every
        # round: stop once a round has nothing new; it stays pending for the next run
        while todo and {t.name for t in todo} != tried:
            tried = {t.name for t in todo}
            _fit(spec, todo, root, wandb_mode, min(n, len(todo)), plan, by_name,
                 f"{spec.name}-{i}" if i else spec.name, launch_id)  # fmt: skip
            left = [t for t in todo if not is_done(root, t)]
            # branches that stepped aside: ended here saying why, or run again (a retried trunk)
            todo = forks.end_orphans(root, forks.deferred(root, left, plan, launch_id), plan,
                                     by_name)  # fmt: skip
            i += 1
    finally:
        stop.set()
        if thread:
            thread.join()


def _fit(spec, todo, root, wandb_mode, n, plan, by_name, name, launch_id) -> None:
    """One Tuner over `todo`: bundles of trunks first, then of their branches, level by level
    (forks.waves), since Tune starts its trials in the grid's order."""
    from ray import tune

    trainable = tune.with_resources(_trial_fn, _trial_resources)
    common = {
        "wandb": wandb_mode,
        "max_failures": spec.max_failures,
        "storage": str(root / "_ray"),
        "driver_resources": dict(spec.driver_resources),
        "asha": bool(spec.asha),
        "launch_id": launch_id,
    }
    running = {t.name for t in todo}
    groups = [g for level in forks.waves(todo, plan) for g in bundles(level, n, bool(spec.asha))]
    configs = [
        {
            "trials": [
                {"spec": t.to_json(), "dir": str(trial_dir(root, t)),
                 **forks.fork_config(root, t, plan, by_name, running, launch_id,
                                    spec.keep_forks)}
                for t in group
            ],
            **common,
        }
        for group in groups
    ]  # fmt: skip
    scheduler = None
    if spec.asha:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=max(t.spec.total_steps for t in todo),
            grace_period=spec.asha.get("grace_period", 1),
            reduction_factor=spec.asha.get("reduction_factor", 3),
        )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=n,
            # One trial actor per slot runs trial after trial: a fresh actor per trial would
            # import torch again (~3 s of CPU) next to the trials still training.
            reuse_actors=True,
            scheduler=scheduler,
            metric=(spec.asha or {}).get("metric", "eval_loss") if scheduler else None,
            mode="min" if scheduler else None,
            trial_dirname_creator=_bundle_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(root / "_ray"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[_quiet_progress()],
        ),
    )
    grid = tuner.fit()
    if scheduler is not None:
        _mark_stopped(grid)


def _quiet_progress():
    """Tune's own per-trial console lines ("Trial ... completed. Last result: ...", printed even
    at verbose=0 for trials that report nothing) replaced by nothing: progress.Live says it."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class Quiet(TrialProgressCallback):
        def on_trial_result(self, *args, **kwargs) -> None:
            pass

        def on_trial_complete(self, *args, **kwargs) -> None:
            pass

        def on_trial_error(self, *args, **kwargs) -> None:
            pass

    return Quiet()


def _bundle_name(tune_trial) -> str:
    trials = tune_trial.config["trial"]["trials"]
    first = trials[0]["dir"].rsplit("/", 1)[-1]
    return first if len(trials) == 1 else f"{first}+{len(trials) - 1}"


def _mark_stopped(grid) -> None:
    """Trials the early-stopping scheduler ended: status `stopped`, with their partial curve."""
    for result in grid:
        tdir = Path(result.config["trial"]["trials"][0]["dir"])
        try:
            rec = files.read_json(tdir / "trial.json")
        except (OSError, ValueError):
            continue
        if result.error is None and rec.get("status") == "running":
            try:  # flushed at every eval, so it ends where the scheduler stopped the trial
                curve = pl.read_parquet(tdir / "curve.parquet")
            except (OSError, pl.exceptions.PolarsError):
                curve = files.curve_frame([])
            evals = curve["eval_loss"].drop_nulls()
            rec.update(
                status="stopped",
                error="stopped early by the ASHA scheduler",
                steps_done=int(curve["step"].max() or 0),
                tokens_seen=int(curve["tokens"].max() or 0),
                final_eval_loss=evals[-1] if len(evals) else None,
                best_eval_loss=evals.min() if len(evals) else None,
            )
            files.write_json(tdir / "trial.json", rec)
