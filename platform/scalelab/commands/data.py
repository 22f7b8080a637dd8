"""`scalelab data prepare`: text files, folders, JSONL or Parquet in; token files out."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(
    no_args_is_help=True, help="Prepare real text for training: a token .bin and its manifest."
)


@data_app.command()
def prepare(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Text files, folders of them, .jsonl or .parquet files."),
    ],
    out: Annotated[Path, typer.Option(help="Output folder (created; must not exist).")],
    tokenizer: Annotated[
        str, typer.Option(help="bpe (train a byte-level BPE here), bytes, or a tokenizer.json.")
    ] = "bpe",
    vocab_size: Annotated[
        int | None, typer.Option(help="BPE vocabulary, end-of-text included (default 8192).")
    ] = None,
    eval_fraction: Annotated[
        float | None, typer.Option(help="Share of documents held out (default 0.005).")
    ] = None,
    text_column: Annotated[str, typer.Option(help="JSONL field / Parquet column.")] = "text",
    glob: Annotated[str, typer.Option(help="File names taken from folders, e.g. '*.md'.")] = "*",
    dtype: Annotated[
        str, typer.Option(help="auto (uint16 if it fits), uint16 or uint32.")
    ] = "auto",
    decode_errors: Annotated[
        str, typer.Option(help="strict: non-UTF-8 is an error; replace: U+FFFD, counted.")
    ] = "strict",
    eot_token: Annotated[
        str | None, typer.Option(help="End-of-text token of a loaded tokenizer.json.")
    ] = None,
    min_eval_tokens: Annotated[
        int | None,
        typer.Option(help="Refuse a smaller eval split (default 4160: one eval batch, 64 x 65)."),
    ] = None,
    bpe_sample_chars: Annotated[
        int | None,
        typer.Option(help="The BPE learns from the first N characters of training text (2^28)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
):
    """Tokenize documents into OUT/train.bin, OUT/eval.bin (held out by documents),
    OUT/tokenizer.json and OUT/manifest.json; a failure leaves nothing behind."""
    from scalelab.data.prepare import PrepareOptions
    from scalelab.data.prepare import prepare as run_prepare

    given = {
        "vocab_size": vocab_size,
        "eval_fraction": eval_fraction,
        "eot_token": eot_token,
        "min_eval_tokens": min_eval_tokens,
        "bpe_sample_chars": bpe_sample_chars,
    }
    opts = PrepareOptions(
        tokenizer=tokenizer,
        text_column=text_column,
        pattern=glob,
        dtype=dtype,
        decode_errors=decode_errors,
        **{k: v for k, v in given.items() if v is not None},
    )
    with _bars():
        m = run_prepare(inputs, out, opts, overwrite=overwrite)
    for line in summary(m, out):
        typer.echo(line)


def summary(m: dict, out: Path) -> list[str]:
    """What was written, in a few lines."""
    t, tok = m["timing"], m["tokenizer"]
    docs = m["train"]["documents"] + m["eval"]["documents"]
    tokens = m["train"]["tokens"] + m["eval"]["tokens"]
    lines = [
        f"{out}: {docs:,} documents, {tokens:,} tokens ({tok['kind']}, vocabulary "
        f"{m['vocab_size']:,}, {m['dtype']}) from {t['input_mb']:.1f} MB in {t['total_s']:.1f} s "
        f"({t['mb_per_s']:.2f} MB/s)"
    ]
    for split in ("train", "eval"):
        s = m[split]
        lines.append(
            f"  {split:<5} {s['documents']:>9,} documents {s['tokens']:>13,} tokens  {out / s['file']}"
        )
    if m["skipped"]:
        n = len(m["skipped"])
        kinds: dict[str, int] = {}
        for s in m["skipped"]:
            kinds[s["reason"].split(" ")[0]] = kinds.get(s["reason"].split(" ")[0], 0) + 1
        what = ", ".join(f"{v} {k}" for k, v in kinds.items())
        lines.append(f"note: {n} file{'s' * (n != 1)} skipped ({what}); manifest.json lists them")
    if m["replaced_bytes"]:
        files = sum(1 for s in m["sources"] if s["replaced_bytes"])
        lines.append(
            f"note: {m['replaced_bytes']:,} undecodable bytes in {files} file(s) became U+FFFD"
        )
    lines.append(f'train on it: DataSpec("tokens", params={{"dir": "{out}"}})')
    return lines


@contextmanager
def _bars() -> Iterator[None]:
    """Byte progress bars with MB/s on a terminal (stderr); nothing otherwise."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    import scalelaws.core.progress as lib

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    bars = Progress("{task.description}", *columns, console=Console(stderr=True))

    def factory(label: str):
        task = bars.add_task(label, total=None)
        return lambda done, total: bars.update(task, completed=done, total=total)

    with bars, lib.reporting(factory):
        yield
