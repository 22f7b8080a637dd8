"""Bad input to `scalelab data prepare`: one line naming the file or option and the fix (exit 2),
or a counted note; a failure leaves nothing behind (no output folder, no temp folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_run import cli, one_error_line

TEXT = "def f(x):\n    return x + 1\n" * 200  # 5,400 bytes


def prep(tmp_path: Path, inputs: list, *opts, capsys) -> tuple[int, str, str]:
    argv = ["data", "prepare", *inputs, "--out", tmp_path / "out", "--tokenizer", "bytes"]
    return cli(argv + ["--eval-fraction", "0.5", "--min-eval-tokens", "100", *opts], capsys)


def refused(tmp_path: Path, inputs: list, *opts, capsys) -> str:
    """The one error line; and nothing written: no out, no temp folder beside it."""
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = prep(tmp_path, inputs, *opts, capsys=capsys)
    assert code == 2, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return one_error_line(err)


def texts(tmp_path: Path, n: int = 4) -> list[Path]:
    paths = []
    for i in range(n):
        (p := tmp_path / f"t{i}.txt").write_text(f"# {i}\n{TEXT}")
        paths.append(p)
    return paths


def test_empty_files_are_skipped_and_counted(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for i in range(4):
        (tmp_path / "in" / f"t{i}.txt").write_text(TEXT)
    (tmp_path / "in" / "empty.txt").write_text("")
    code, out, err = prep(tmp_path, [tmp_path / "in"], capsys=capsys)
    assert code == 0, err
    assert "note: 1 file skipped (1 empty); manifest.json lists them" in out
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["skipped"] == [{"path": str(tmp_path / "in" / "empty.txt"), "reason": "empty"}]
    assert m["train"]["documents"] + m["eval"]["documents"] == 4


def test_only_empty_files_is_an_error(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("")
    line = refused(tmp_path, [tmp_path / "a.txt"], capsys=capsys)
    assert "input: no documents to prepare (1 file skipped: 1 empty)" in line


def test_a_binary_file_named_is_an_error_found_in_a_folder_a_note(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    paths = texts(tmp_path / "in")
    (blob := tmp_path / "in" / "x.bin").write_bytes(b"PK\x03\x04\x00\x00" + bytes(range(256)))
    line = refused(tmp_path, [*paths, blob], capsys=capsys)
    assert f"{blob}: binary (a NUL byte at offset 4), not text; remove it" in line
    code, out, err = prep(tmp_path, [tmp_path / "in"], capsys=capsys)
    assert code == 0 and "note: 1 file skipped (1 binary)" in out, err


def test_mixed_encodings_strict_names_file_and_offset(tmp_path, capsys):
    paths = texts(tmp_path)
    (latin := tmp_path / "latin1.txt").write_bytes(("x = 'café'\n" * 3).encode("latin-1"))
    line = refused(tmp_path, [*paths, latin], capsys=capsys)
    assert f"{latin}: not UTF-8 at byte offset 8 (invalid continuation byte)" in line
    assert "--decode-errors replace" in line
    out = tmp_path / "new" / "deeper" / "out"  # folders made for it go again
    code, _, err = cli(
        ["data", "prepare", *paths, latin, "--out", out, "--tokenizer", "bytes"], capsys
    )
    assert code == 2 and "not UTF-8" in one_error_line(err) and not (tmp_path / "new").exists()


def test_mixed_encodings_replace_counts_them(tmp_path, capsys):
    paths = texts(tmp_path)
    (latin := tmp_path / "latin1.txt").write_bytes(("x = 'café'\n" * 3).encode("latin-1"))
    code, out, err = prep(tmp_path, [latin, *paths], "--decode-errors", "replace", capsys=capsys)
    assert code == 0, err
    assert "note: 3 undecodable bytes in 1 file(s) became U+FFFD" in out
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["replaced_bytes"] == 3 and m["sources"][0]["replaced_bytes"] == 3
    ev = np.fromfile(tmp_path / "out" / "eval.bin", np.uint16)  # document 0 is held out
    assert bytes(ev[: ev.tolist().index(256)].astype(np.uint8)).decode() == "x = 'caf\ufffd'\n" * 3


def test_jsonl_errors_name_the_line(tmp_path, capsys):
    good = [json.dumps({"text": TEXT}) for _ in range(3)]
    (f := tmp_path / "a.jsonl").write_bytes("\n".join(good).encode() + b'\n{"text": "caf\xe9"}\n')
    offset = len("\n".join(good)) + 1 + len('{"text": "caf')
    line = refused(tmp_path, [f], capsys=capsys)
    assert f"{f}:4: not UTF-8 at byte offset {offset}" in line
    f.write_text("\n".join(good) + "\n{not json\n")
    assert f"{f}:4: not JSON" in refused(tmp_path, [f], capsys=capsys)
    f.write_text("\n".join(good) + '\n{"body": "x"}\n')
    line = refused(tmp_path, [f], capsys=capsys)
    assert f"{f}:4: no field 'text' (has: body); name the text field with --text-column" in line
    f.write_text("\n".join(good) + '\n{"text": 3}\n')
    assert f"{f}:4: field 'text' is int, not text" in refused(tmp_path, [f], capsys=capsys)


def test_parquet_errors_name_the_column(tmp_path, capsys):
    (f := tmp_path / "a.parquet").write_bytes(b"not parquet at all")
    assert f"{f}: not a Parquet file" in refused(tmp_path, [f], capsys=capsys)
    pq.write_table(pa.table({"body": [TEXT] * 4, "n": [1, 2, 3, 4]}), f)
    line = refused(tmp_path, [f], capsys=capsys)
    assert f"{f}: no column 'text' (has: body, n); name the text column" in line
    line = refused(tmp_path, [f], "--text-column", "n", capsys=capsys)
    assert f"{f}: column 'n' is int64, not text" in line
    code, _, err = prep(tmp_path, [f], "--text-column", "body", capsys=capsys)
    assert code == 0, err


def word_tokenizer(path: Path, n_words: int, eot: str | None = "<|endoftext|>") -> None:
    """A real tokenizers WordLevel tokenizer.json with `n_words` words w0, w1, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(n_words)} | {"[UNK]": n_words}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if eot:
        tok.add_special_tokens([eot])
    tok.save(str(path))


def test_a_vocabulary_over_uint16_writes_uint32_or_refuses_forced_uint16(tmp_path, capsys):
    word_tokenizer(tok := tmp_path / "tok.json", 70_000)
    doc = " ".join(f"w{i}" for i in range(69_900, 70_000)) + " w5"
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"d{i}.txt").write_text(doc)
    line = refused(tmp_path, [docs], "--tokenizer", tok, "--dtype", "uint16", capsys=capsys)
    assert "--dtype uint16: the vocabulary has 70,002 tokens, ids up to 70,001 do not fit" in line
    assert "use --dtype uint32 or auto" in line
    code, out, err = prep(
        tmp_path, [docs], "--tokenizer", tok, "--min-eval-tokens", "1", capsys=capsys
    )
    assert code == 0 and "(file, vocabulary 70,002, uint32)" in out, err
    ids = np.fromfile(tmp_path / "out" / "train.bin", np.uint32)
    assert ids[:3].tolist() == [69_900, 69_901, 69_902] and ids[-2:].tolist() == [5, 70_001]


def test_a_tokenizer_file_that_does_not_load(tmp_path, capsys):
    paths = texts(tmp_path)
    (bad := tmp_path / "tok.json").write_text('{"model": {"type": "nope"}}')
    line = refused(tmp_path, paths, "--tokenizer", bad, capsys=capsys)
    assert f"--tokenizer {bad}: does not load as a tokenizers tokenizer.json" in line
    assert "--tokenizer bpe / bytes" in line
    (bad := tmp_path / "tok.json").write_text("not json")
    assert "does not load" in refused(tmp_path, paths, "--tokenizer", bad, capsys=capsys)
    missing = tmp_path / "nope.json"
    line = refused(tmp_path, paths, "--tokenizer", missing, capsys=capsys)
    assert f"--tokenizer: no file {str(missing)!r}" in line
    word_tokenizer(noeot := tmp_path / "noeot.json", 10, eot=None)
    line = refused(tmp_path, paths, "--tokenizer", noeot, capsys=capsys)
    assert "no end-of-text token (looked for <|endoftext|>" in line and "--eot-token" in line
    line = refused(tmp_path, paths, "--tokenizer", noeot, "--eot-token", "<s>", capsys=capsys)
    assert f"--eot-token: {noeot} has no token '<s>'" in line


def test_a_corpus_smaller_than_one_eval_batch(tmp_path, capsys):
    paths = texts(tmp_path, 2)  # the eval document: 5,404 bytes and end-of-text
    line = refused(tmp_path, paths, "--min-eval-tokens", "10000", capsys=capsys)
    assert "corpus: the eval split holds 5,405 tokens, fewer than one eval batch" in line
    assert "give more text, a larger --eval-fraction, or a smaller --min-eval-tokens" in line
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for i in range(2):
        (tiny / f"{i}.py").write_text("x = 1\n")
    argv = ["data", "prepare", tiny, "--out", tmp_path / "out", "--tokenizer", "bytes"]
    code, _, err = cli(argv + ["--eval-fraction", "0.5"], capsys)  # the default: 4,160
    assert code == 2 and "holds 7 tokens, fewer than one eval batch (--min-eval-tokens 4,160" in (
        one_error_line(err)
    )
    assert not (tmp_path / "out").exists()


def test_too_few_documents_to_hold_any_out(tmp_path, capsys):
    paths = texts(tmp_path, 3)
    line = refused(tmp_path, paths, "--eval-fraction", "0.1", capsys=capsys)
    assert "--eval-fraction 0.1: holds out none of 3 documents (it needs at least 5)" in line
    assert "raise it to 0.1667 or more" in line


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["--dtype", "uint8"], "--dtype: 'uint8' must be auto, uint16 or uint32"),
        (["--decode-errors", "ignore"], "--decode-errors: 'ignore' must be strict or replace"),
        (["--eval-fraction", "1.5"], "--eval-fraction: 1.5 must be in (0, 1)"),
        (["--tokenizer", "bpe", "--vocab-size", "100"], "--vocab-size: 100 must be in [258,"),
    ],
)
def test_bad_options(tmp_path, capsys, opts, message):
    assert message in refused(tmp_path, texts(tmp_path), *opts, capsys=capsys)


def test_paths_out_exists_and_overwrite(tmp_path, capsys):
    paths = texts(tmp_path)
    missing = tmp_path / "no_such"
    line = refused(tmp_path, [*paths, missing], capsys=capsys)
    assert f"input: no such file or folder {str(missing)!r}" in line
    assert not missing.exists()
    (tmp_path / "empty_dir").mkdir()
    line = refused(tmp_path, [tmp_path / "empty_dir"], capsys=capsys)
    assert "input: no files matching '*'" in line
    assert prep(tmp_path, paths, capsys=capsys)[0] == 0
    first = (tmp_path / "out" / "manifest.json").read_text()
    line = refused(tmp_path, paths, capsys=capsys)
    assert f"--out: {tmp_path / 'out'} exists (a folder); pass --overwrite" in line
    assert (tmp_path / "out" / "manifest.json").read_text() == first  # untouched
    code, _, err = prep(tmp_path, paths[:2], "--overwrite", capsys=capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(m["sources"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
