"""Ray glue only: run a SweepSpec as one Ray Tune Tuner over a function trainable.

One-worker trials train inside the trial process. Multi-worker trials build a TorchTrainer
inside the trial (Ray Train V2: `Tuner(TorchTrainer)` is gone) whose metrics reach Tune via
TuneReportCallback. Every trial writes into `<study>/trials/<trial name>/`; a trial whose
trial.json says completed/diverged (same content hash) is skipped, so running a study again
resumes it, and an interrupted trial resumes from its last checkpoint.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl

from scalelab import files, progress, status
from scalelab.config import SpecError, Trial
from scalelab.sweep import SweepSpec, expand
from scalelab.tracking.runs import wandb_on
from scalelaws.study import has_tables


def study_dir(spec: SweepSpec, storage: str | None = None) -> Path:
    """The study folder: `storage` or spec.storage itself, else $SCALELAB_STORAGE/<study> (set
    once per cluster, on its shared file system), else ./results/<study>."""
    root = storage or spec.storage
    shared = os.environ.get("SCALELAB_STORAGE", "")
    if "://" in (root or shared):
        raise SpecError(
            f"storage: {root or shared!r} is a URI; trials write through a POSIX file system, "
            "so mount the bucket or share (EFS, FSx, NFS, ...) and pass the mount path"
        )
    if root:
        return Path(root).absolute()
    return (Path(shared).absolute() if shared else Path.cwd() / "results") / spec.name


def trial_dir(root: Path, trial: Trial) -> Path:
    return Path(root) / "trials" / trial.name


def is_done(root: Path, trial: Trial) -> bool:
    """Finished marker: trial.json with a final status and the same content hash."""
    return status.is_done(trial_dir(root, trial), trial.content_hash())


def check_not_legacy(root: Path) -> None:
    """Refuse a results folder written before the identity/placement split (its trial names
    and hashes differ): `scalelab migrate` converts it in place, recomputing nothing."""
    old = [p.parent.name for p in Path(root).glob("trials/*/trial.json")]
    old = [
        n
        for n in old
        if (r := status.read_record(Path(root) / "trials" / n)) and status.is_legacy(r)
    ]
    if old:
        raise SpecError(
            f"storage: {root} holds {len(old)} trial folder(s) in the old layout (e.g. {old[0]}); "
            f"run `scalelab migrate {root}` first (renames and rewrites them, recomputes nothing)"
        )


def footprint(trial: Trial) -> dict[str, float]:
    """Logical resources one trial holds: the trial actor plus its Train workers, if any."""
    r = trial.run
    if r.workers == 1:
        return {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    return {"CPU": 1 + r.workers * r.cpus_per_worker, "GPU": r.workers * r.gpus_per_worker}


def connect(trials: list[Trial], num_cpus: int | None = None) -> dict:
    """Join a running cluster (RAY_ADDRESS, or a node from `ray start`), else start a local Ray.

    The local Ray gets max(cores, biggest trial) logical CPUs, so a 2-worker trial (3 CPUs)
    still fits on a 2-core laptop. Returns the cluster's resources, with "_joined": True when
    it joined a cluster (whose autoscaler may still add nodes).
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        global _EMBEDDED
        if os.environ.get("RAY_ADDRESS") or _local_cluster_running():
            ray.init(address="auto", **quiet)
            return {**ray.cluster_resources(), "_joined": True}
        else:
            # Nothing reads Prometheus metrics from an embedded Ray, and exporting them wakes
            # every Ray process often enough to slow 2 trials on 2 cores by ~5%.
            os.environ.setdefault("RAY_enable_metrics_collection", "0")
            # Ray starts one idle worker per CPU for the driver, which Tune's trial actors
            # cannot use (they carry their own runtime_env): ~0.5 s of CPU each, for nothing.
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
            need = max((footprint(t)["CPU"] for t in trials), default=1)
            cpus = num_cpus or max(os.cpu_count() or 1, math.ceil(need))
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
            _EMBEDDED = True
            _watch(_session_dir())
    return ray.cluster_resources()


_EMBEDDED = False  # this process started its own local Ray (connect), and stops it (shutdown)
_REAPER = None  # the watcher that stops that Ray if this process dies first (scalelab.reaper)


def _session_dir() -> Path | None:
    import ray

    try:
        return Path(ray._private.worker._global_node.get_session_dir_path())
    except Exception:  # a private API: without it only the folder stays behind
        return None


def _watch(session: Path | None) -> None:
    """Start scalelab.reaper with a pipe from this process: if this process dies (kill -9
    included), the pipe closes and the reaper stops the embedded Ray at once."""
    global _REAPER
    if session is None or not session.name.startswith("session_2"):
        return
    _REAPER = subprocess.Popen(
        [sys.executable, "-m", "scalelab.reaper", str(session), str(os.getpid())],
        stdin=subprocess.PIPE,
        start_new_session=True,  # outlives a Ctrl-C or hang-up of the terminal's group
    )


def shutdown() -> None:
    """Stop the local Ray this process started and delete its session folder (~10 MB of logs
    and sockets per run under /tmp/ray). A joined cluster is left alone."""
    global _EMBEDDED, _REAPER
    if not _EMBEDDED:
        return
    import ray

    if _REAPER is not None:
        # The driver disconnects, then the reaper kills Ray's processes all at once (0.1 s)
        # instead of ray.shutdown's SIGTERM-and-wait for each in turn (1.1 s); their logs
        # go with the session folder either way.
        ray._private.worker._global_node = None
    ray.shutdown()
    _EMBEDDED = False
    if _REAPER is not None:
        _REAPER.stdin.close()
        try:
            _REAPER.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _REAPER = None


def _local_cluster_running() -> bool:
    """True if the last `ray start` on this machine left a live head node (ray.init() would
    join it), not merely some other process's embedded Ray, which dies with that process."""
    try:
        from ray._private.services import find_bootstrap_address, find_gcs_addresses

        address = find_bootstrap_address(None)  # written by `ray start` into /tmp/ray
        return bool(address) and address in find_gcs_addresses()
    except Exception:
        return False


def concurrency(trials: list[Trial], resources: dict, driver: dict | None = None) -> int:
    """Trials that fit at once, from the cluster's resources and the largest trial footprint
    (each trial actor also holds `driver`, the study's custom driver_resources).

    Counted in Ray's units of 1/10,000 (it rounds fractions to 4 decimals): in floats
    1 // 0.2 is 4.0, while Ray fits 5 trials of 0.2 GPU on one GPU; 1 GPU / 0.25 = 4 trials.
    """
    fits = []
    need_all = {k: max((footprint(t)[k] for t in trials), default=0) for k in ("CPU", "GPU")}
    need_all.update(driver or {})
    for kind, need in need_all.items():
        if need > 0:
            fits.append(_ray_units(resources.get(kind, 0)) // _ray_units(need))
    n = min(fits) if fits else 1
    if n < 1:
        short = [k for k, v in need_all.items() if v > 0 and resources.get(k, 0) < v]
        raise SpecError(
            f"resources: no node can hold one trial: it needs {', '.join(short)} = "
            f"{', '.join(str(need_all[k]) for k in short)}, the cluster has "
            f"{', '.join(str(resources.get(k, 0)) for k in short)}; lower gpus_per_worker / "
            "cpus_per_worker / driver_resources, or add nodes that provide them"
        )
    return n


def _ray_units(x: float) -> int:
    return round(x * 10_000)


def check_devices(trials: list[Trial], resources: dict) -> None:
    """device='cuda' on a cluster with no GPU fails every trial: refuse it before any starts."""
    if resources.get("GPU", 0) == 0 and any(t.run.device == "cuda" for t in trials):
        raise SpecError(
            "device: 'cuda' but the cluster has no GPU; use device='auto' (CUDA when there "
            "is one) or 'cpu', or run on GPU nodes"
        )


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
    if show_progress:
        print(
            f"study {spec.name}: {len(trials)} trials, {len(trials) - len(pending)} done, "
            f"{len(pending)} to run -> {root}"
        )
    if pending:
        try:
            _tune(spec, pending, root, wandb_mode, show_progress, num_cpus, max_concurrent)
        finally:
            shutdown()
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


def _tune(spec, pending, root, wandb_mode, show_progress, num_cpus, max_concurrent) -> None:
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
    from ray import tune

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
    trainable = tune.with_resources(_trial_fn, _trial_resources)
    common = {
        "wandb": wandb_mode,
        "max_failures": spec.max_failures,
        "storage": str(root / "_ray"),
        "driver_resources": dict(spec.driver_resources),
        "asha": bool(spec.asha),
    }
    configs = [
        {"trials": [{"spec": t.to_json(), "dir": str(trial_dir(root, t))} for t in group], **common}
        for group in bundles(pending, n, bool(spec.asha))
    ]
    scheduler = None
    if spec.asha:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=max(t.spec.total_steps for t in pending),
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
            name=spec.name,
            storage_path=str(root / "_ray"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[_quiet_progress()],
        ),
    )
    view = progress.Live(root, pending, concurrency=n) if show_progress else None
    stop = threading.Event()
    thread = threading.Thread(target=view.loop, args=(stop,), daemon=True) if view else None
    if thread:
        thread.start()
    try:
        grid = tuner.fit()
    finally:
        stop.set()
        if thread:
            thread.join()
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


BUNDLE_WAVES = 4  # bundles per slot: enough to balance the load, few Tune round trips


def bundles(pending: list[Trial], slots: int, asha: bool) -> list[list[Trial]]:
    """Groups of one-worker trials that one Tune trial runs back to back (one runner process
    keeps torch, the data and W&B loaded; no Tune round trip between them). About
    BUNDLE_WAVES bundles per slot, each a stride through the list so long and short trials
    mix. Multi-worker trials and studies under ASHA (which stops trials one by one) are not
    bundled."""
    if asha:
        return [[t] for t in pending]
    groups: dict[tuple, list[Trial]] = {}
    alone = []
    for t in pending:
        if t.run.workers == 1:
            groups.setdefault((t.run.cpus_per_worker, t.run.gpus_per_worker), []).append(t)
        else:
            alone.append([t])
    out = []
    for group in groups.values():
        k = max(1, min(len(group), BUNDLE_WAVES * slots))
        out += [group[i::k] for i in range(k)]
    return out + alone


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


def _trial_resources(config: dict) -> dict:
    """The trial actor's own resources; a multi-worker trial's Train workers ask for theirs."""
    cfg = config["trial"]
    r = Trial.from_json(cfg["trials"][0]["spec"]).run  # a bundle's trials share a footprint
    own = {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker} if r.workers == 1 else {"cpu": 1}
    return {**own, **cfg["driver_resources"]}


def _report_to_tune(row: dict) -> None:
    """tune.report, then honour a scheduler's stop (Tune sets the session's stop event)."""
    from ray import tune
    from ray.train._internal.session import get_session

    from scalelab.train import Stopped

    tune.report({k: v for k, v in row.items() if v is not None})
    session = get_session()
    if session is not None and session.stop_event.is_set():
        raise Stopped(f"stopped early by the scheduler at step {row['step']}")


def _trial_fn(config: dict) -> None:
    """Tune function trainable: a bundle of one-worker trials run here one after another, or
    one multi-worker trial through a TorchTrainer."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    bundle = config["trial"]
    shared = {k: v for k, v in bundle.items() if k != "trials"}
    items = [{**shared, **item, "driver_node": node} for item in bundle["trials"]]
    if Trial.from_json(items[0]["spec"]).run.workers == 1:
        _run_bundle(items)
        return
    cfg = items[0]
    trial = Trial.from_json(cfg["spec"])
    spec, run = trial.spec, trial.run
    from ray import train as ray_train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _worker_fn,
        train_loop_config=cfg,
        scaling_config=ray_train.ScalingConfig(
            num_workers=run.workers,
            use_gpu=run.gpus_per_worker > 0,
            resources_per_worker={
                "CPU": run.cpus_per_worker,
                **({"GPU": run.gpus_per_worker} if run.gpus_per_worker else {}),
            },
        ),
        run_config=ray_train.RunConfig(
            name=spec.name,
            storage_path=cfg["storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray_train.FailureConfig(max_failures=cfg["max_failures"]),
        ),
    )
    trainer.fit()


def _run_bundle(items: list[dict]) -> None:
    """Train each trial of the bundle in this process. A trial that fails does not stop the
    others; the bundle then raises, Tune retries it, and the retry skips what finished."""
    from scalelab.train import train

    failed = []
    for cfg in items:
        trial = Trial.from_json(cfg["spec"])
        if status.is_done(Path(cfg["dir"]), trial.content_hash()):
            continue  # a retried bundle: this one finished before
        try:
            train(
                trial,
                cfg["dir"],
                wandb_mode=cfg["wandb"],
                flush_curve=cfg["asha"],
                record_extra={"driver_node": cfg["driver_node"]},
                on_log=_report_to_tune if cfg["asha"] else None,
            )
        except Exception as e:  # trial.json already says failed, with the error
            failed.append(f"{trial.name}: {type(e).__name__}: {e}")
        finally:
            _release_memory()  # the actor runs the next trial
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(items)} trials failed: " + "; ".join(failed))


def _release_memory() -> None:
    """Between two trials of one runner: hand the finished trial's GPU memory back. A full
    gc.collect() costs ~0.13 s with torch, Ray and W&B loaded (half the gap between two short
    trials), and on CPU reference counting has already freed the trial: only CUDA needs it."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _worker_fn(cfg: dict) -> None:
    """Ray Train worker: every rank trains; rank 0 writes; every rank reports (V2 contract)."""
    from ray import train as ray_train

    from scalelab.train import train

    train(
        Trial.from_json(cfg["spec"]),
        cfg["dir"],
        wandb_mode=cfg["wandb"],
        record_extra={"driver_node": cfg["driver_node"], "rank_nodes": _rank_nodes()},
        on_log=lambda row: ray_train.report({k: v for k, v in row.items() if v is not None}),
    )


def _rank_nodes() -> list[str]:
    """The Ray node of every rank, in rank order (Ray has set up the process group)."""
    import ray
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device

    if torch.cuda.is_available():  # NCCL gathers objects through the current device
        torch.cuda.set_device(get_device())
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    return nodes


def write_study_json(root: Path, spec: SweepSpec, trials: list[Trial]) -> None:
    """study.json: the sweep as declared and the trials it expands to (names, hashes, points)."""
    import dataclasses
    import json

    files.write_json(
        Path(root) / "study.json",
        {
            "name": spec.name,
            "sweep": json.loads(json.dumps(dataclasses.asdict(spec), default=str)),
            "format": status.FORMAT,
            "trials": [
                {"name": t.name, "content_hash": t.content_hash(), "grid": t.spec.grid}
                for t in trials
            ],
        },
    )
