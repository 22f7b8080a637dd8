"""Test tiers. Unit (`make test-fast`, under 90 s on 2 cores): no Ray, no subprocesses, and
no test marked `slow` (those run in `make test` only).
Integration (`make test` runs both): real local Ray clusters, torchrun, killed processes, CLIs
in subprocesses. A test joins the integration tier by living in one of INTEGRATION_MODULES or
by carrying @pytest.mark.integration."""

from __future__ import annotations

import pytest

# real Ray, torchrun, killed processes; notebooks (a kernel process); W&B (its service process)
INTEGRATION_MODULES = {"test_launch", "test_faults", "test_cluster", "test_notebooks"}
INTEGRATION_MODULES |= {"test_dashboard"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
