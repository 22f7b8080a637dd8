"""Text in, token files out: `scalelab data prepare` and the embedded corpora use this.

    manifest = prepare(["corpus/"], "data/corpus", PrepareOptions(tokenizer="bpe"))

OUT/train.bin and OUT/eval.bin hold the documents' tokens, each document followed by the
end-of-text id (flat uint16/uint32, nanoGPT style: the `tokens` source reads them);
OUT/tokenizer.json and OUT/manifest.json describe them. The held-out split is by documents:
every 1/eval_fraction-th document, whole. Everything is written into a temp folder beside OUT
and renamed into place at the end, so a failure leaves no partial output. Memory stays bounded:
documents stream through in pieces (readers.py) and tokens go to disk a batch at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from scalelab.data import texttok
from scalelab.data.readers import Input, InputError, find_inputs, read
from scalelaws.core.progress import for_task

FORMAT = "scalelab.prepared/1"
BATCH_CHARS = 1 << 20  # characters of text per tokenizer call
MIN_EVAL_TOKENS = 64 * 65  # one eval batch at TrialSpec's defaults (64 sequences of 64 + 1)
SPLITS = ("train", "eval")
RULE = "document i (0-based, input order, empty ones not counted) is held out when " + (
    "floor((i + 1) * eval_fraction + 1/2) > floor(i * eval_fraction + 1/2)"
)


@dataclass(frozen=True)
class PrepareOptions:
    tokenizer: str = "bpe"  # "bpe" (train one here), "bytes", or a path to a tokenizer.json
    vocab_size: int = 8192  # BPE tokens, end-of-text included (bpe only)
    eval_fraction: float = 0.005  # share of documents held out
    text_column: str = "text"  # JSONL field / Parquet column holding the text
    pattern: str = "*"  # file names taken from folders (fnmatch)
    dtype: str = "auto"  # "auto" (uint16 if the vocabulary fits), "uint16" or "uint32"
    decode_errors: str = "strict"  # "strict" (error, file and offset) or "replace" (counted)
    eot_token: str | None = None  # end-of-text token of a loaded tokenizer.json
    min_eval_tokens: int = MIN_EVAL_TOKENS  # fewer held-out tokens is an error
    bpe_sample_chars: int = 1 << 28  # the BPE learns from the first this many characters of
    # training documents: its memory grows with their distinct words, not with the corpus

    def check(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.tokenizer in ("", None):
            raise ValueError("--tokenizer: give bpe, bytes or a tokenizer.json path")
        if self.tokenizer == "bpe" and not 258 <= self.vocab_size <= 1 << 24:
            raise ValueError(
                f"--vocab-size: {self.vocab_size} must be in [258, 16777216] "
                "(256 bytes, end-of-text, at least one merge)"
            )
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"--eval-fraction: {self.eval_fraction} must be in (0, 1)")
        if self.dtype not in ("auto", "uint16", "uint32"):
            raise ValueError(f"--dtype: {self.dtype!r} must be auto, uint16 or uint32")
        if self.decode_errors not in ("strict", "replace"):
            raise ValueError(f"--decode-errors: {self.decode_errors!r} must be strict or replace")
        if self.min_eval_tokens < 0:
            raise ValueError(f"--min-eval-tokens: {self.min_eval_tokens} must be >= 0")
        if self.bpe_sample_chars <= 0:
            raise ValueError(f"--bpe-sample-chars: {self.bpe_sample_chars} must be > 0")


def is_eval(i: int, fraction: float) -> bool:
    """Whether document i is held out (RULE): every 1/fraction-th document, evenly spread."""
    return math.floor((i + 1) * fraction + 0.5) > math.floor(i * fraction + 0.5)


def prepare(
    inputs: list[str | Path],
    out: str | Path,
    opts: PrepareOptions | None = None,
    *,
    overwrite: bool = False,
    extra: dict | None = None,
) -> dict:
    """Tokenize `inputs` (files and folders) into the folder `out`; returns the manifest.
    `extra` is merged into the manifest (e.g. a corpus' name and version). Bad input raises
    ValueError (InputError for a file) with one line naming the file or option and the fix."""
    opts = opts or PrepareOptions()
    opts.check()
    out = Path(out).expanduser()
    if out.exists() and not (overwrite and out.is_dir()):
        what = "a file" if out.is_file() else "a folder"
        raise ValueError(f"--out: {out} exists ({what}); pass --overwrite or another --out")
    files = find_inputs(inputs, opts.pattern)
    made = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        manifest = _run(files, tmp, opts, extra or {})
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # the folders made for OUT, innermost first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return manifest


# ---- the two passes ------------------------------------------------------------------------


def _run(files: list[Input], tmp: Path, opts: PrepareOptions, extra: dict) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    total = sum(f.size for f in files)
    tok = _tokenizer(files, opts, total)
    t_tok = time.perf_counter() - t0
    dtype = texttok.dtype_for(tok.vocab_size, opts.dtype)
    counts = {s: {"file": f"{s}.bin", "documents": 0, "tokens": 0, "characters": 0} for s in SPLITS}
    with open(tmp / "train.bin", "wb") as ftrain, open(tmp / "eval.bin", "wb") as feval:
        writer = _Writer(tok, dtype, {"train": ftrain, "eval": feval}, counts)
        for inp, split, piece in _pieces(files, opts, total, "tokenizing"):
            writer.add(inp, split, piece.text, piece.end)
        writer.flush()
    _check(files, counts, opts)
    tok_json = tok.to_json()
    (tmp / "tokenizer.json").write_text(tok_json)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    manifest = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tokenizer": tok.describe()
        | {"file": "tokenizer.json", "sha256": hashlib.sha256(tok_json.encode()).hexdigest()},
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "dtype": dtype,
        "split": {"by": "document", "eval_fraction": opts.eval_fraction, "rule": RULE},
        **counts,
        "sources": [_source(f) for f in files if not f.skipped],
        "skipped": [{"path": str(f.path), "reason": f.skipped} for f in files if f.skipped],
        "empty_documents": sum(f.empty for f in files),
        "replaced_bytes": sum(f.replaced for f in files),
        "options": asdict(opts),
        "timing": {
            "tokenizer_s": round(t_tok, 3),
            "total_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "input_mb": round(total / 1e6, 3),
            "mb_per_s": round(total / 1e6 / wall, 3) if wall > 0 else None,
        },
        **extra,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _tokenizer(files: list[Input], opts: PrepareOptions, total: int):
    if opts.tokenizer == "bytes":
        return texttok.BytesTokenizer()
    if opts.tokenizer != "bpe":
        return texttok.load_file(opts.tokenizer, opts.eot_token)

    def texts() -> Iterator[str]:
        fed = 0
        for _, split, piece in _pieces(files, opts, total, "training BPE"):
            if split == "train":
                yield piece.text
                fed += len(piece.text)
                if fed >= opts.bpe_sample_chars:
                    return

    return texttok.train_bpe(texts(), opts.vocab_size)


def _pieces(
    files: list[Input], opts: PrepareOptions, total: int, label: str
) -> Iterator[tuple[Input, str, object]]:
    """(input, split, piece) for every piece of text, in order; the split is decided at each
    document's first piece."""
    bar = for_task(None, label)
    done, shown, doc, in_doc, split = 0, 0, -1, False, "train"
    for inp in files:
        start = done
        for piece in read(inp, opts.text_column, opts.decode_errors):
            done += piece.nbytes
            if bar and done - shown >= 1 << 20:  # a bar update per MB, not per document
                bar(min(done, total), total)
                shown = done
            if piece.text is None:
                continue
            if not in_doc:
                doc += 1
                split = "eval" if is_eval(doc, opts.eval_fraction) else "train"
            in_doc = not piece.end
            yield inp, split, piece
        done = start + inp.size
        if bar and (done - shown >= 1 << 20 or done == total):
            bar(done, total)
            shown = done


class _Writer:
    """Batches pieces into tokenizer calls and appends their ids (+ end of text) to the files."""

    def __init__(self, tok, dtype: str, files: dict, counts: dict):
        self.tok, self.dtype, self.files, self.counts = tok, np.dtype(dtype), files, counts
        self.batch: list[tuple[Input, str, str, bool]] = []
        self.chars = 0
        self.eot = np.array([tok.eot_id], np.int64)

    def add(self, inp: Input, split: str, text: str, end: bool) -> None:
        self.batch.append((inp, split, text, end))
        self.chars += len(text)
        if end:
            self.counts[split]["documents"] += 1
            inp.eval_documents += split == "eval"
        if self.chars >= BATCH_CHARS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        ids = self.tok.encode([b[2] for b in self.batch])
        parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        for (inp, split, text, end), arr in zip(self.batch, ids, strict=True):
            parts[split] += [arr, self.eot] if end else [arr]
            inp.tokens[split] += len(arr) + end
            self.counts[split]["characters"] += len(text)
        for split, arrs in parts.items():
            if arrs:
                flat = np.concatenate(arrs)
                self.files[split].write(flat.astype(self.dtype).tobytes())
                self.counts[split]["tokens"] += int(flat.size)
        self.batch, self.chars = [], 0


# ---- checks, manifest, publishing ----------------------------------------------------------


def _check(files: list[Input], counts: dict, opts: PrepareOptions) -> None:
    """Refuse a corpus the trainer could not use: no documents, an empty split, an eval split
    smaller than one eval batch."""
    n = sum(c["documents"] for c in counts.values())
    if n == 0:
        notes = skip_summary(files) or "no text"
        raise InputError(f"input: no documents to prepare ({notes}); give files with text")
    if counts["eval"]["documents"] == 0:
        f = opts.eval_fraction
        need = next(i + 1 for i in itertools.count(max(0, math.ceil(0.5 / f) - 2)) if is_eval(i, f))
        raise ValueError(
            f"--eval-fraction {f}: holds out none of {n} documents (it needs at least {need}); "
            f"raise it to {math.ceil(0.5 / n * 1e4) / 1e4} or more, or give more documents"
        )
    if counts["train"]["documents"] == 0:
        raise ValueError(f"--eval-fraction {opts.eval_fraction}: leaves no training document")
    held = counts["eval"]["tokens"]
    if held < opts.min_eval_tokens:
        raise ValueError(
            f"corpus: the eval split holds {held:,} tokens, fewer than one eval batch "
            f"(--min-eval-tokens {opts.min_eval_tokens:,}); give more text, a larger "
            "--eval-fraction, or a smaller --min-eval-tokens"
        )


def skip_summary(files: list[Input]) -> str:
    """e.g. "3 files skipped: 2 empty, 1 binary"."""
    reasons: dict[str, int] = {}
    for f in files:
        if f.skipped:
            key = f.skipped.split(" ")[0]
            reasons[key] = reasons.get(key, 0) + 1
    n = sum(reasons.values())
    if not n:
        return ""
    return f"{n} file{'s' * (n != 1)} skipped: " + ", ".join(f"{k} {r}" for r, k in reasons.items())


def _source(f: Input) -> dict:
    return {
        "path": str(f.path),
        "format": f.format,
        "bytes": f.size,
        "sha256": _sha256(f.path),
        "documents": f.documents,
        "eval_documents": f.eval_documents,
        "tokens": dict(f.tokens),
        "empty_documents": f.empty,
        "replaced_bytes": f.replaced,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp folder to `out` (an old `out` goes only once the new is ready)."""
    if not out.exists():
        try:
            os.rename(tmp, out)
            return
        except OSError:  # another process published first
            if not out.exists():
                raise
    if not overwrite:
        raise ValueError(f"--out: {out} appeared while preparing; pass --overwrite")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "x")
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
