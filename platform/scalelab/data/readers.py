"""Documents out of text files, JSONL and Parquet, streamed in pieces of bounded size.

A text file is one document; a JSONL line or a Parquet row is one (its `text_column`). A long
text is cut into pieces of about `CHUNK` bytes just before a line end that follows a printable
ASCII character: a GPT-2-style pre-tokenizer splits there anyway (no pre-token runs from a
non-space into whitespace), so a byte-level BPE tokenizes it as it would whole. Text must be
UTF-8: a decode error names the file and byte offset (`errors="strict"`), or each bad sequence
becomes U+FFFD and is counted (`errors="replace"`). A file whose first 8 KB hold a NUL byte is
binary (git's rule): an error when named, skipped with a note when found in a folder.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20  # bytes of text per piece (about)
NUL_PROBE = 8000  # bytes looked at for a NUL (git's binary rule)
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}  # anything else is text
_SAFE_CUT = re.compile(rb"(?<=[!-~])(?=\n)")  # between "x" and "\n"


class InputError(ValueError):
    """A bad input file: the message names the file (and line or byte offset) and the fix."""


@dataclass
class Input:
    """One input file and what reading it found."""

    path: Path
    format: str  # "text", "jsonl" or "parquet"
    named: bool  # named by the user (binary: error), else found in a folder (binary: skipped)
    size: int = 0
    documents: int = 0  # non-empty documents read
    empty: int = 0  # empty documents (an empty file, a blank text field) left out
    replaced: int = 0  # undecodable bytes replaced by U+FFFD (errors="replace")
    skipped: str = ""  # why the whole file was left out, if it was
    tokens: dict = field(default_factory=lambda: {"train": 0, "eval": 0})
    eval_documents: int = 0


@dataclass
class Piece:
    text: str | None  # None: no text, progress only
    end: bool  # the last piece of its document
    nbytes: int  # input bytes it stands for (for progress)


def find_inputs(paths: list[str | Path], pattern: str = "*") -> list[Input]:
    """Files named, and the files under folders named whose name matches `pattern` (sorted,
    hidden ones left out). Raises InputError for a missing path or when nothing is found."""
    out: list[Input] = []
    for given in paths:
        p = Path(given).expanduser()
        if p.is_file():
            out.append(Input(p, _format(p), named=True, size=p.stat().st_size))
        elif p.is_dir():
            found = [
                f
                for f in sorted(p.rglob("*"))
                if f.is_file()
                and fnmatch.fnmatch(f.name, pattern)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
            out += [Input(f, _format(f), named=False, size=f.stat().st_size) for f in found]
        else:
            raise InputError(f"input: no such file or folder {str(p)!r}")
    if not out:
        raise InputError(f"input: no files matching {pattern!r} in {', '.join(map(str, paths))}")
    return out


def _format(path: Path) -> str:
    return FORMATS.get(path.suffix.lower(), "text")


def read(inp: Input, text_column: str = "text", errors: str = "strict") -> Iterator[Piece]:
    """The pieces of every non-empty document of `inp`; counts land on `inp`."""
    inp.documents = inp.empty = inp.replaced = 0
    inp.skipped = ""
    if inp.size == 0:
        inp.empty, inp.skipped = 1, "empty"
        return
    reader = {"text": _text, "jsonl": _jsonl, "parquet": _parquet}[inp.format]
    yield from reader(inp, text_column, errors)


# ---- decoding ------------------------------------------------------------------------------


class _Decoder:
    """UTF-8 of a byte range at a known file offset: strict errors name file and offset;
    "replace" turns each bad sequence into U+FFFD and counts its bytes on the input."""

    def __init__(self, inp: Input, errors: str):
        self.inp, self.errors = inp, errors

    def __call__(self, data: bytes, offset: int, where: str = "") -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            if self.errors == "strict":
                raise InputError(
                    f"{self.inp.path}{where}: not UTF-8 at byte offset {offset + e.start} "
                    f"({e.reason}); convert the file to UTF-8 or pass --decode-errors replace"
                ) from None
        out, pos = [], 0
        while True:
            try:
                out.append(data[pos:].decode("utf-8"))
                return "".join(out)
            except UnicodeDecodeError as e:
                out.append(data[pos : pos + e.start].decode("utf-8") + "\ufffd")
                self.inp.replaced += e.end - e.start
                pos += e.end


def _last_char_start(buf: bytes) -> int:
    """Length of `buf` without a UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(buf)) + 1):
        b = buf[-back]
        if b & 0xC0 != 0x80:  # an ASCII byte or a lead byte
            need = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return len(buf) - back if need > back else len(buf)
    return len(buf)


def cut(buf: bytes) -> int:
    """Where a piece of a long text ends: after the last safe line end, else at the last
    whole UTF-8 character."""
    window = buf[-(1 << 16) :] if len(buf) > 1 << 16 else buf
    last = None
    for m in _SAFE_CUT.finditer(window):
        last = m.start()
    if last is not None and last > 0:
        return len(buf) - len(window) + last
    return _last_char_start(buf)


# ---- formats -------------------------------------------------------------------------------


def _text(inp: Input, _column: str, errors: str) -> Iterator[Piece]:
    decode = _Decoder(inp, errors)
    with open(inp.path, "rb") as f:
        head = f.read(CHUNK)
        nul = head.find(b"\0", 0, NUL_PROBE)
        if nul >= 0:
            why = f"binary (a NUL byte at offset {nul})"
            if inp.named:
                raise InputError(f"{inp.path}: {why}, not text; remove it or convert it to UTF-8")
            inp.skipped = why
            return
        buf, offset = head, 0
        inp.documents = 1
        while True:
            more = f.read(CHUNK)
            if not more:
                yield Piece(decode(buf, offset), True, len(buf))
                return
            buf += more
            while len(buf) > CHUNK:
                k = cut(buf[: 2 * CHUNK])
                if k == 0:  # a lone partial character: keep reading
                    break
                yield Piece(decode(buf[:k], offset), False, k)
                buf, offset = buf[k:], offset + k


def _jsonl(inp: Input, column: str, errors: str) -> Iterator[Piece]:
    decode = _Decoder(inp, errors)
    offset = 0
    with open(inp.path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where, start = f":{n}", offset
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                rec = json.loads(decode(raw, start, where))
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{inp.path}{where}: not JSON ({e.msg}); one object a line"
                ) from None
            if not isinstance(rec, dict) or column not in rec:
                keys = ", ".join(list(rec)[:8]) if isinstance(rec, dict) else type(rec).__name__
                raise InputError(
                    f"{inp.path}{where}: no field {column!r} (has: {keys}); "
                    "name the text field with --text-column"
                )
            text = rec[column]
            if text is None or text == "":
                inp.empty += 1
                continue
            if not isinstance(text, str):
                raise InputError(
                    f"{inp.path}{where}: field {column!r} is {type(text).__name__}, not text"
                )
            inp.documents += 1
            yield Piece(text, True, len(raw))


def _parquet(inp: Input, column: str, _errors: str) -> Iterator[Piece]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(inp.path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{inp.path}: not a Parquet file ({_first_line(e)})") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise InputError(
            f"{inp.path}: no column {column!r} (has: {', '.join(names[:8])}); "
            "name the text column with --text-column"
        )
    kind = pf.schema_arrow.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{inp.path}: column {column!r} is {kind}, not text")
    per_row = inp.size / max(pf.metadata.num_rows, 1)
    batches = pf.iter_batches(batch_size=1024, columns=[column])
    while True:
        try:
            values = next(batches).column(0).to_pylist()
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{inp.path}: unreadable Parquet ({_first_line(e)})") from None
        for text in values:
            if not text:
                inp.empty += 1
                continue
            inp.documents += 1
            yield Piece(text, True, 0)
        yield Piece(None, False, int(per_row * len(values)))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
