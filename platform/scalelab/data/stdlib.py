"""The Python standard library's own source as a real-text corpus: on every machine, offline.

DataSpec("python_stdlib") trains on the `.py` files of the running Python's standard library
(sysconfig's "stdlib" path, without site-packages and the test folders, which distributions
ship apart), one document per file. It is prepared once (prepare.py) into the cache
(SCALELAB_CACHE, like the synthetic sources) and read through the `tokens` source; the
held-out files (whole) are the eval data. The manifest records the Python version.
"""

from __future__ import annotations

import fcntl
import platform
import sys
import sysconfig
from contextlib import contextmanager
from pathlib import Path

from scalelab.data.base import (
    Param,
    Source,
    cache_dir,
    fraction,
    int_between,
    one_of,
    param_error,
)
from scalelab.data.prepare import PrepareOptions, prepare
from scalelab.data.tokens import TokenFileSource

FORMAT_VERSION = 1
DEFAULT_VOCAB = 4096
SKIP_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The corpus' files, sorted: every .py under the stdlib outside SKIP_DIRS."""
    root = root or stdlib_root()
    return sorted(
        p
        for p in root.rglob("*.py")
        if p.is_file() and not set(p.relative_to(root).parts[:-1]) & set(SKIP_DIRS)
    )


class PythonStdlibSource(Source):
    """Windows of the prepared stdlib tokens (train files), eval on the held-out files."""

    name = "python_stdlib"
    PARAMS = {
        "tokenizer": Param("bpe", one_of("bpe", "bytes"), "byte-level BPE trained here, or bytes"),
        "vocab_size": Param(
            None,
            lambda v: None if v is None else int_between(258, 65536)(v),
            f"BPE vocabulary (null: {DEFAULT_VOCAB}); not with bytes",
        ),
        "eval_fraction": Param(0.02, fraction, "share of the files held out, whole, for eval"),
    }

    @classmethod
    def cross_check(cls, p: dict) -> None:
        if p["tokenizer"] == "bytes" and p["vocab_size"] is not None:
            raise param_error("vocab_size", "only with tokenizer 'bpe' (bytes has 257 tokens)")

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.folder = ensure_prepared(self.params)
        self.files = TokenFileSource(seed, dir=str(self.folder))
        self.vocab_size = self.files.vocab_size
        self.manifest = self.files.manifest

    def batch(self, step, batch_size, seq_len, rank=0, world=1):
        return self.files.batch(step, batch_size, seq_len, rank, world)

    def eval_batch(self, batch_size, seq_len):
        return self.files.eval_batch(batch_size, seq_len)

    def describe(self) -> dict:
        own = {"name", "path", "eval_path", "dir", "eval_fraction", "vocab_size"}
        files = {k: v for k, v in self.files.describe().items() if k not in own}
        return {
            **super().describe(),
            **files,
            "vocab_size": self.vocab_size,
            "python": self.manifest["corpus"]["python"],
            "cache": str(self.folder),
        }


def corpus_key(params: dict) -> dict:
    """What the prepared folder depends on: the params and this Python's stdlib."""
    vocab = (params["vocab_size"] or DEFAULT_VOCAB) if params["tokenizer"] == "bpe" else None
    return {
        "tokenizer": params["tokenizer"],
        "vocab_size": vocab,
        "eval_fraction": params["eval_fraction"],
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "stdlib": str(stdlib_root()),
    }


def ensure_prepared(params: dict) -> Path:
    """The cache folder of the prepared corpus, preparing it first if needed (one process
    prepares; others wait on a lock and read it)."""
    key = corpus_key(params)
    folder = cache_dir("python_stdlib", key, FORMAT_VERSION)
    if (folder / "manifest.json").is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _locked(folder.parent / f".{folder.name}.lock"):
            if not (folder / "manifest.json").is_file():
                _prepare(folder, key)
    except OSError as e:
        raise ValueError(
            f"data.name: cannot write the python_stdlib cache {folder} ({e.strerror or e}); "
            "set SCALELAB_CACHE to a writable folder"
        ) from None
    return folder


def _prepare(folder: Path, key: dict) -> None:
    files = stdlib_files()
    if not files:
        raise ValueError(f"data.name: no .py files under {stdlib_root()} (python_stdlib)")
    opts = PrepareOptions(
        tokenizer=key["tokenizer"],
        vocab_size=key["vocab_size"] or DEFAULT_VOCAB,
        eval_fraction=key["eval_fraction"],
    )
    corpus = {"name": "python_stdlib", "files": len(files), "excluded_dirs": list(SKIP_DIRS)}
    prepare(files, folder, opts, overwrite=True, extra={"corpus": corpus | key})


@contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
