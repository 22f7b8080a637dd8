"""Study files: `experiments/<study>.py` declares `SPEC = SweepSpec(...)` (pure data).

Optionally it defines `after(root: Path) -> None`, run once the sweep has finished (analysis,
follow-up sweeps). `scalelab run FILE` and `python FILE` (ending in
`from scalelab.cli import run_file; run_file(__file__)`) do the same thing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from scalelab.config import SpecError
from scalelab.sweep import SweepSpec


def load(path: str | Path) -> ModuleType:
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"study: no file {path}; pass a study file such as experiments/quickstart.py"
        )
    name = f"scalelab_study_{path.stem}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module
    try:
        mod_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise SpecError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    except Exception as e:  # the study file is Python: name where it broke
        line = _line_in(e, path)
        raise SpecError(f"{path}{line}: {type(e).__name__}: {e}") from None
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, SweepSpec):
        raise SpecError(f"SPEC: {path} must define SPEC = SweepSpec(...)")
    return module


def with_placement(spec: SweepSpec, settings: list[str]) -> SweepSpec:
    """The study with RunConfig fields set from `KEY=VALUE` strings (`--placement device=cuda`):
    placement only, so no trial is renamed or rerun. Values are JSON (2, 0.25, true) or text."""
    import dataclasses
    import json

    from scalelab.config import RUN_FIELDS

    changes = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or key not in RUN_FIELDS:
            raise SpecError(
                f"placement: {item!r} must be KEY=VALUE with KEY one of {', '.join(RUN_FIELDS)}"
            )
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    return dataclasses.replace(spec, run=dataclasses.replace(spec.run, **changes))


def _line_in(e: BaseException, path: Path) -> str:
    """`:<line>` of the innermost frame of `path` in e's traceback ("" if none)."""
    import traceback

    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f":{frames[-1].lineno}" if frames else ""


def run_module(
    module: ModuleType,
    *,
    storage: str | None = None,
    wandb_mode: str | None = None,
    show_progress: bool = True,
    max_concurrent: int | None = None,
    preset: str | None = None,
    reanalyse: bool = False,
    placement: list[str] | None = None,
) -> Path:
    from scalelab import launch

    spec = module.SPEC
    if preset:
        presets = getattr(module, "PRESETS", {})
        if preset not in presets:
            raise SpecError(
                f"preset: unknown {preset!r}; this study has {', '.join(presets) or 'none'}"
            )
        spec = presets[preset]
    if placement:
        spec = with_placement(spec, placement)
    if wandb_mode is None:
        wandb_mode = os.environ.get("WANDB_MODE", "offline")
    root = launch.run(
        spec,
        storage=storage,
        wandb_mode=wandb_mode,
        show_progress=show_progress,
        max_concurrent=max_concurrent,
    )
    after = getattr(module, "after", None)
    if after is not None and run_after(after, root, force=reanalyse):
        from scalelab.tracking.analysis_run import log_quietly  # the hook's fits, in W&B

        if run_dir := log_quietly(root, wandb_mode, "after"):
            print(f"W&B analysis run: {run_dir}")
    return root


def run_after(after, root: Path, force: bool = False) -> bool:
    """Run the study's after(root) hook, unless it already ran on these very tables (its
    inputs): a rerun with nothing new to train then returns at once. `force` runs it anyway."""
    from scalelab import files
    from scalelaws.study.load import tables_sha256

    digest = tables_sha256(root)
    done = root / "after.json"
    try:
        if not force and files.read_json(done)["tables_sha256"] == digest:
            print(f"analysis is up to date ({done.name}); --reanalyse runs after() again")
            return False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    after(root)
    files.write_json(done, {"tables_sha256": digest})
    return True
