"""Test tiers. Unit (`make test-fast`, under 90 s on 2 cores): no Ray, no subprocesses, and
no test marked `slow` (those run in `make test` only).
Integration (`make test` runs both): real local Ray clusters, torchrun, killed processes, CLIs
in subprocesses. A test joins the integration tier by living in one of INTEGRATION_MODULES or
by carrying @pytest.mark.integration."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# real Ray, torchrun, killed processes; notebooks (a kernel process); W&B (its service process)
INTEGRATION_MODULES = {"test_launch", "test_faults", "test_cluster", "test_notebooks"}
INTEGRATION_MODULES |= {"test_dashboard"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray for one test module: 3 CPUs (a 2-rank FSDP trial needs its 2 workers
    and the trial driver). address="local": a Ray of its own even where RAY_ADDRESS is set or
    a `ray start` cluster runs on the machine (ray.init() would join that one)."""
    import ray

    from scalelab.launch import ray_session

    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    session = ray_session._session_dir()
    yield
    ray.shutdown()
    if session is not None:  # ~1 MB of logs and sockets per run under /tmp/ray
        shutil.rmtree(session, ignore_errors=True)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """SCALELAB_CACHE pointed at a fresh folder for one test module (the data sources build
    their caches there), restored after it."""
    old = os.environ.get("SCALELAB_CACHE")
    os.environ["SCALELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["SCALELAB_CACHE"])
    if old is None:
        os.environ.pop("SCALELAB_CACHE")
    else:
        os.environ["SCALELAB_CACHE"] = old
