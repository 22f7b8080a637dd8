"""A module imported on first use: `from scalelab.lazy import torch` in code that only needs
torch to build batches, so reading specs, validating sweeps and checking which trials are done
(a no-op rerun) never pay torch's ~2-4 s import."""

from __future__ import annotations

import importlib
from types import ModuleType


class Lazy:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


torch = Lazy("torch")
