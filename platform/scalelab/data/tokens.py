"""A memory-mapped token file (nanoGPT style: a flat uint16/uint32 `.bin`, no header).

Train = windows at random offsets (per seed and step) of the head of `path`; eval = fixed,
evenly spaced windows of the held-out tail (`eval_fraction`), or of `eval_path` if given.
Or `dir`, a folder from `scalelab data prepare`: train.bin trains, eval.bin (documents held out
whole) evaluates, and its manifest.json gives the dtype and the vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from scalelab.data.base import (
    Param,
    Source,
    check_step,
    fraction,
    one_of,
    optional_str,
    param_error,
    rank_rows,
    step_rng,
    unigram_entropy,
    windows,
)
from scalelab.lazy import torch


def _vocab(v) -> str | None:
    ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
    return None if ok else "must be a positive int (or null to read it from the file)"


class TokenFileSource(Source):
    name = "tokens"
    PARAMS = {
        "path": Param(None, optional_str, "the .bin token file (required)"),
        "dtype": Param("uint16", one_of("uint16", "uint32"), "token dtype in the file"),
        "vocab_size": Param(None, _vocab, "embedding rows; null: max token id + 1 (scans)"),
        "eval_fraction": Param(0.005, fraction, "held-out tail of `path` for eval"),
        "eval_path": Param(None, optional_str, "separate eval file (then all of path trains)"),
        "dir": Param(None, optional_str, "a prepared folder (scalelab data prepare), not path"),
    }
    FROM_MANIFEST = ("path", "eval_path", "dtype", "eval_fraction")  # set by dir's manifest

    @classmethod
    def check(cls, params: dict) -> dict:
        p = super().check(params)
        if p["dir"] is not None:
            clash = [k for k in cls.FROM_MANIFEST if k in params]
            if clash:
                raise param_error(clash[0], "comes from dir's manifest.json; leave it out")
        elif p["path"] is None:
            raise param_error("path", "required: a .bin file of tokens (or dir: a prepared folder)")
        return p

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        p = self.params
        self.dtype = p["dtype"]
        self.manifest: dict | None = None
        if p["dir"] is not None:
            self._open_prepared(Path(p["dir"]).expanduser())
            return
        self.data = self._open("path", p["path"])
        if p["eval_path"] is None:
            self.n_train = int(len(self.data) * (1 - p["eval_fraction"]))
            self.eval_data = self.data[self.n_train :]
        else:
            self.n_train = len(self.data)
            self.eval_data = self._open("eval_path", p["eval_path"])
        if p["vocab_size"] is None:
            top = max(self._max(self.data), self._max(self.eval_data))
            self.vocab_size = top + 1
        else:
            self.vocab_size = p["vocab_size"]

    def _open_prepared(self, folder: Path) -> None:
        path = folder / "manifest.json"
        if not path.is_file():
            raise param_error(
                "dir", f"{folder} has no manifest.json; write it with `scalelab data prepare`"
            )
        try:
            m = json.loads(path.read_text())
            self.dtype, vocab = m["dtype"], int(m["vocab_size"])
            files = m["train"]["file"], m["eval"]["file"]
        except (ValueError, KeyError, TypeError) as e:
            raise param_error("dir", f"{path} is not a prepare manifest ({e!r})") from None
        self.manifest = m
        self.manifest_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.data = self._open("dir", folder / files[0])
        self.eval_data = self._open("dir", folder / files[1])
        self.n_train = len(self.data)
        want = self.params["vocab_size"]
        if want is not None and want < vocab:
            raise param_error("vocab_size", f"{want} < the prepared vocabulary {vocab}")
        self.vocab_size = want or vocab

    def _open(self, field: str, path) -> np.ndarray:
        f = Path(path).expanduser()
        if not f.is_file():
            raise param_error(field, f"no such file {str(f)!r}")
        size = f.stat().st_size
        item = np.dtype(self.dtype).itemsize
        if size == 0 or size % item:
            raise param_error(
                field, f"{f}: {size} bytes is not a whole number of {item}-byte tokens"
            )
        return np.memmap(f, dtype=self.dtype, mode="r")

    @staticmethod
    def _max(arr: np.ndarray, chunk: int = 1 << 26) -> int:
        return max(int(arr[i : i + chunk].max()) for i in range(0, len(arr), chunk))

    def train_offsets(self, step: int, batch_size: int, seq_len: int) -> np.ndarray:
        high = self.n_train - (seq_len + 1)
        if high < 0:
            raise param_error("path", f"{self.n_train} training tokens < seq_len+1={seq_len + 1}")
        return step_rng(self.seed, check_step(step)).integers(0, high + 1, size=batch_size)

    def batch(self, step, batch_size, seq_len, rank=0, world=1) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len, rank, world)
        offsets = self.train_offsets(step, batch_size, seq_len)[rank_rows(batch_size, rank, world)]
        return self._check_ids(windows(self.data, offsets, seq_len + 1))

    def eval_batch(self, batch_size, seq_len) -> torch.Tensor:
        self.check_batch_args(batch_size, seq_len)
        n = len(self.eval_data)
        if self.manifest is not None and n < batch_size * (seq_len + 1):
            raise param_error(
                "dir",
                f"eval.bin holds {n:,} tokens, fewer than one eval batch ({batch_size} x "
                f"{seq_len + 1}); prepare with a larger --eval-fraction or lower eval_batch_size",
            )
        if n < seq_len + 1:
            field = "eval_path" if self.params["eval_path"] else "eval_fraction"
            raise param_error(field, f"{n} held-out tokens < seq_len+1={seq_len + 1}")
        offsets = np.linspace(0, n - seq_len - 1, batch_size).astype(np.int64)
        return self._check_ids(windows(self.eval_data, offsets, seq_len + 1))

    def _check_ids(self, t: torch.Tensor) -> torch.Tensor:
        if int(t.max()) >= self.vocab_size:
            raise param_error(
                "vocab_size", f"token id {int(t.max())} >= vocab_size={self.vocab_size}"
            )
        return t

    def describe(self) -> dict:
        head = np.asarray(self.data[: min(self.n_train, 1 << 24)])  # first 16M tokens
        counts = np.bincount(head, minlength=self.vocab_size)
        return {
            **super().describe(),
            "vocab_size": self.vocab_size,  # the param may be null (read from the data)
            "n_tokens": int(self.n_train),
            "n_eval_tokens": int(len(self.eval_data)),
            "unigram_entropy": unigram_entropy(counts),
            "unigram_sample_tokens": int(head.size),
            **self._prepared(),
        }

    def _prepared(self) -> dict:
        """Provenance of a prepared folder: its tokenizer and the manifest's hash."""
        if self.manifest is None:
            return {}
        m = self.manifest
        return {
            "tokenizer": m["tokenizer"]["kind"],
            "dtype": m["dtype"],
            "n_documents": m["train"]["documents"],
            "n_eval_documents": m["eval"]["documents"],
            "manifest_sha256": self.manifest_sha256,
        }
