"""Source base class, parameter checks, per-step RNG, and the on-disk cache shared by sources.

Batch convention: `batch()` returns t of shape (batch_size // world, seq_len + 1); inputs are
t[:, :-1], targets t[:, 1:]. Padding is -100 in t: use `inputs_targets(t)` (PAD id is 0, so
inputs = t[:, :-1].clamp(min=0)) and cross_entropy(ignore_index=-100).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from scalelab.data.tokenizer import PAD
from scalelab.lazy import torch
from scalelaws.io import atomic_write

EVAL_KEY = 2**62  # RNG key of eval batches; training steps never reach it


def inputs_targets(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch into (inputs, targets): -100 padding becomes PAD (0) in the inputs."""
    return t[:, :-1].clamp(min=PAD), t[:, 1:]


# ---- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    default: object
    check: Callable[[object], str | None]  # returns the problem ("must be ...") or None
    doc: str = ""


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def positive_int(v) -> str | None:
    return None if _is_int(v) and v > 0 else "must be a positive int"


def nonneg_int(v) -> str | None:
    return None if _is_int(v) and v >= 0 else "must be a non-negative int"


def int_between(lo: int, hi: int) -> Callable[[object], str | None]:
    def check(v):
        return None if _is_int(v) and lo <= v <= hi else f"must be an int in [{lo}, {hi}]"

    return check


def one_of(*choices) -> Callable[[object], str | None]:
    def check(v):
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"

    return check


def is_bool(v) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def fraction(v) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1
    return None if ok else "must be a number in (0, 1)"


def optional_str(v) -> str | None:
    return None if v is None or (isinstance(v, str | os.PathLike) and str(v)) else "must be a path"


def resolve_params(source: str, spec: dict[str, Param], given: dict) -> dict:
    """Defaults overlaid with `given`; unknown names and bad values raise ValueError naming them."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ValueError(
            f"data.params.{unknown[0]}: unknown parameter for source {source!r}; "
            f"allowed: {', '.join(spec)}"
        )
    out = {k: given.get(k, p.default) for k, p in spec.items()}
    for k, p in spec.items():
        problem = p.check(out[k])
        if problem:
            raise ValueError(f"data.params.{k}: {problem} (got {out[k]!r})")
    return {k: int(v) if _is_int(v) else v for k, v in out.items()}


def param_error(field: str, problem: str) -> ValueError:
    return ValueError(f"data.params.{field}: {problem}")


# ---- randomness ----------------------------------------------------------------------------


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The RNG of optimizer step `step`: data position = step, so resuming needs no state."""
    return np.random.default_rng([seed, step])


def rank_rows(batch_size: int, rank: int, world: int) -> slice:
    """Rows of the global batch that `rank` of `world` takes: [rank*b, (rank+1)*b)."""
    b = batch_size // world
    return slice(rank * b, (rank + 1) * b)


# ---- statistics ----------------------------------------------------------------------------


def unigram_entropy(counts: np.ndarray) -> float:
    """H = -sum p ln p over token frequencies, in nats/token."""
    p = np.asarray(counts, float)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


# ---- cache ---------------------------------------------------------------------------------


def cache_root() -> Path:
    env = os.environ.get("SCALELAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "scalelab" / "data"


def cache_dir(name: str, params: dict, version: int) -> Path:
    """<root>/<name>-<12 hex of sha256(params, format version)>."""
    key = json.dumps({"v": version, **params}, sort_keys=True, default=str)
    return cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr), "wb")


def save_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), "w")


def try_cache(folder: Path, files: dict[str, np.ndarray | str], overwrite: bool = False) -> None:
    """Save arrays (.npy) and texts, skipping files already there unless `overwrite`; meta.json
    goes last and marks the folder complete. A read-only cache only warns (data is in memory)."""
    try:
        for fname, obj in sorted(files.items(), key=lambda kv: kv[0] == "meta.json"):
            if (folder / fname).exists() and not overwrite:
                continue
            if isinstance(obj, np.ndarray):
                save_npy(folder / fname, obj)
            else:
                save_text(folder / fname, obj)
    except OSError as e:
        warnings.warn(f"scalelab.data: cannot write cache {folder}: {e}", stacklevel=3)


# ---- the source interface ------------------------------------------------------------------


class Source:
    """A training-data source. Subclasses set `name`, `PARAMS`, `vocab_size`, `seq_len`."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    vocab_size: int
    seq_len: int | None = None  # a sequence length the format fixes, else None (any)

    def __init__(self, seed: int = 0, **params):
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"data.seed: must be a non-negative int (got {seed!r})")
        self.seed = int(seed)
        self.params = self.check(params)

    @classmethod
    def param_defaults(cls) -> dict:
        return {k: p.default for k, p in cls.PARAMS.items()}

    @classmethod
    def check(cls, params: dict) -> dict:
        """All params (defaults filled in), validated without generating any data."""
        p = resolve_params(cls.name, cls.PARAMS, params)
        cls.cross_check(p)
        return p

    @classmethod
    def cross_check(cls, p: dict) -> None:
        """Checks that involve several params; raise param_error(field, problem)."""

    def check_batch_args(self, batch_size: int, seq_len: int, rank: int = 0, world: int = 1):
        if not _is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"batch_size: must be a positive int (got {batch_size!r})")
        if not _is_int(seq_len) or seq_len <= 0:
            raise ValueError(f"seq_len: must be a positive int (got {seq_len!r})")
        if self.seq_len is not None and seq_len < self.seq_len:
            raise ValueError(
                f"seq_len: source {self.name!r} needs seq_len >= {self.seq_len} (got {seq_len})"
            )
        if not _is_int(world) or world <= 0 or not _is_int(rank) or not 0 <= rank < world:
            raise ValueError(f"rank/world: need 0 <= rank < world (got {rank}/{world})")
        if batch_size % world:
            raise ValueError(f"batch_size: {batch_size} is not divisible by world size {world}")

    def batch(
        self, step: int, batch_size: int, seq_len: int, rank: int = 0, world: int = 1
    ) -> torch.Tensor:
        raise NotImplementedError

    def eval_batch(self, batch_size: int, seq_len: int) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, **self.params}

    @property
    def tokens_per_epoch(self) -> int | None:
        return None


def check_step(step: int) -> int:
    if not _is_int(step) or step < 0:
        raise ValueError(f"step: must be a non-negative int (got {step!r})")
    return int(step)


def windows(stream: np.ndarray, offsets: np.ndarray, length: int) -> torch.Tensor:
    """Rows stream[o : o + length] for each offset, as int64."""
    idx = np.asarray(offsets, np.int64)[:, None] + np.arange(length, dtype=np.int64)
    return torch.from_numpy(np.asarray(stream[idx]).astype(np.int64))
