"""The Ray a study runs on: a running cluster if there is one, else a local Ray started here and
stopped at the end (by scalelab.reaper if this process dies first)."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

from scalelab.config import Trial
from scalelab.launch.resources import footprint


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
