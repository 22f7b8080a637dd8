"""Atomic file writes, the one implementation for the whole project.

Every result file (trial.json, curve.parquet, runs.parquet, fit JSON, schedules, caches) is
written to a temp file beside the target and renamed over it, so a reader never sees half a
file and a kill mid-write leaves the previous version. Files get the permissions the user's
umask gives a new file (0644 under the usual 022), not mkstemp's private 0600: results live
on storage that teammates share.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> Path:
    """Call write(f) on a temp file beside `path` (opened with `mode`), then rename it over
    `path`. The folder is created if needed; on any error the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """JSON with sorted keys; numpy scalars and arrays become numbers and lists, and a
    non-finite float becomes null (JSON has no NaN or inf)."""
    text = json.dumps(jsonable(obj), indent=indent, sort_keys=True, allow_nan=False)
    return write_text(path, text + "\n")


def write_parquet(path: str | Path, df, compression: str = "zstd") -> Path:
    """A Polars frame (anything with write_parquet) to Parquet. lz4 writes and reads several
    times faster than zstd for a few % more bytes: the study tables use it."""
    return atomic_write(path, lambda f: df.write_parquet(f, compression=compression), "wb")


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def jsonable(x: Any) -> Any:
    """A JSON-safe copy: dict/list/tuple recursively, numpy and torch scalars and arrays as
    Python numbers and lists, NaN and inf as None, dataclasses through their to_dict()."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    if hasattr(x, "tolist"):  # numpy / torch arrays and scalars
        return jsonable(x.tolist())
    if hasattr(x, "item"):
        return jsonable(x.item())
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
