"""`scalelab demo` / `make demo`: the quickstart study end to end on this machine."""

from __future__ import annotations

import time
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.py"


def run(storage: str | None = None, wandb_mode: str | None = None) -> Path:
    from scalelab import study
    from scalelab.cli import summary

    t0 = time.time()
    module = study.load(QUICKSTART)
    root = study.run_module(module, storage=storage, wandb_mode=wandb_mode)
    summary(root)
    print(f"demo finished in {time.time() - t0:.0f}s")
    return root
