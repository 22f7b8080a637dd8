"""Real text in (`scalelab data prepare`, the python_stdlib source): round trips, manifests, the
split by documents, long documents in pieces, the prepared folder as training data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.cli import main
from scalelab.config import (
    DataSpec,
    ModelSpec,
    OptimSpec,
    RunConfig,
    ScheduleSpec,
    Trial,
    TrialSpec,
)
from scalelab.data import build, readers
from scalelab.data.prepare import PrepareOptions, is_eval, prepare
from scalelab.data.stdlib import SKIP_DIRS, stdlib_files, stdlib_root
from scalelab.data.texttok import EOT, BytesTokenizer, load_prepared, train_bpe

WORDS = "alpha beta gamma delta épsilon 数据 naïve λx: x + 1 <|endoftext|> \t tab".split(" ")


@pytest.fixture(scope="module", autouse=True)
def _cache(module_cache):
    """Every test of this module prepares its data in the module's own cache."""


def make_docs(n: int, seed: int = 0, lines: int = 20) -> list[str]:
    """n distinct documents of mixed scripts, indentation and a literal end-of-text string."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        body = [
            " " * int(rng.integers(0, 5))
            + " ".join(rng.choice(WORDS, size=int(rng.integers(1, 12))))
            for _ in range(lines)
        ]
        docs.append(f"doc {i}\n" + "\n".join(body) + ("\n" if i % 2 else ""))
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    docs = make_docs(60)
    for i, d in enumerate(docs):
        (folder / f"d{i:03}.txt").write_text(d)
    return folder, docs


@pytest.fixture(scope="module")
def bpe_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bpe") / "out"
    opts = PrepareOptions(vocab_size=400, eval_fraction=0.1, min_eval_tokens=100)
    prepare([corpus[0]], out, opts)
    return out


def split_docs(ids: np.ndarray, eot: int) -> list[np.ndarray]:
    ends = np.flatnonzero(ids == eot)
    assert len(ends) and ends[-1] == len(ids) - 1, "every document ends with end-of-text"
    return np.split(ids, ends + 1)[:-1]


def read_split(out: Path, split: str) -> np.ndarray:
    m = json.loads((out / "manifest.json").read_text())
    return np.fromfile(out / m[split]["file"], dtype=m["dtype"]).astype(np.int64)


# ---- tokenizers round-trip -----------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)  # no lone surrogates


@given(TEXT)
def test_bytes_round_trip(text):
    tok = BytesTokenizer()
    ids = tok.encode([text])[0]
    assert ids.max(initial=0) < 256 and tok.decode(ids) == text


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_bpe(iter(corpus[1]), 400)


@settings(max_examples=60)
@given(TEXT)
def test_byte_level_bpe_round_trip(bpe, text):
    ids = bpe.encode([text])[0]
    assert bpe.decode(ids) == text
    assert bpe.eot_id not in ids.tolist()  # "<|endoftext|>" in a text is text


def test_bpe_is_trained_to_size_and_deterministic(corpus, bpe):
    assert bpe.vocab_size == 400 and bpe.eot_id == 0 and bpe.tok.id_to_token(0) == EOT
    again = train_bpe(iter(corpus[1]), 400)
    assert again.to_json() == bpe.to_json()
    long = "".join(corpus[1][:5])
    assert len(bpe.encode([long])[0]) < len(long.encode()) / 2  # merges learned


# ---- the prepared folder -------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", ["bytes", "bpe"])
def test_every_document_lands_whole_in_one_split(corpus, bpe_dir, tmp_path, tokenizer):
    folder, docs = corpus
    if tokenizer == "bpe":
        out = bpe_dir
    else:
        out = tmp_path / "out"
        prepare([folder], out, PrepareOptions("bytes", eval_fraction=0.1, min_eval_tokens=100))
    tok = load_prepared(out)
    split = {
        s: [tok.decode(d[:-1]) for d in split_docs(read_split(out, s), tok.eot_id)]
        for s in ("train", "eval")
    }
    want_eval = [d for i, d in enumerate(docs) if is_eval(i, 0.1)]
    assert split["eval"] == want_eval and len(want_eval) == 6  # every 10th, whole
    assert split["train"] == [d for i, d in enumerate(docs) if not is_eval(i, 0.1)]
    assert not set(split["train"]) & set(split["eval"])


def test_the_manifest_describes_the_files(corpus, bpe_dir):
    folder, docs = corpus
    m = json.loads((bpe_dir / "manifest.json").read_text())
    assert m["format"] == "scalelab.prepared/1" and m["dtype"] == "uint16"
    tok = m["tokenizer"]
    assert (tok["kind"], tok["eot_id"], tok["eot_token"]) == ("bpe", 0, EOT)
    assert 380 < tok["vocab_size"] == m["vocab_size"] <= 400  # fewer if pairs run out
    assert tok["sha256"] == hashlib.sha256((bpe_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert tok["library"].startswith("tokenizers ")
    for s in ("train", "eval"):
        assert m[s]["tokens"] == (bpe_dir / m[s]["file"]).stat().st_size // 2
    assert m["train"]["documents"] + m["eval"]["documents"] == len(docs)
    assert m["train"]["characters"] + m["eval"]["characters"] == sum(map(len, docs))
    assert m["split"] == {"by": "document", "eval_fraction": 0.1, "rule": m["split"]["rule"]}
    assert len(m["sources"]) == len(docs) and not m["skipped"]
    for src, doc in zip(m["sources"], docs, strict=True):
        data = Path(src["path"]).read_bytes()
        assert src["sha256"] == hashlib.sha256(data).hexdigest() and src["bytes"] == len(data)
        assert data.decode() == doc
        assert src["documents"] == 1 and src["format"] == "text"
    per_split = {s: sum(src["tokens"][s] for src in m["sources"]) for s in ("train", "eval")}
    assert per_split == {s: m[s]["tokens"] for s in ("train", "eval")}
    assert m["options"]["vocab_size"] == 400 and m["timing"]["mb_per_s"] > 0


def test_jsonl_and_parquet_rows_are_documents(tmp_path):
    docs = make_docs(30, seed=1)
    rows = [{"id": i, "body": d} for i, d in enumerate(docs)]
    rows.insert(3, {"id": -1, "body": ""})  # an empty document: counted, left out
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows[:15]) + "\n\n")
    pq.write_table(pa.Table.from_pylist(rows[15:]), tmp_path / "b.parquet", row_group_size=4)
    out = tmp_path / "out"
    opts = PrepareOptions("bytes", eval_fraction=0.2, text_column="body", min_eval_tokens=10)
    m = prepare([jsonl, tmp_path / "b.parquet"], out, opts)
    assert [s["format"] for s in m["sources"]] == ["jsonl", "parquet"]
    assert [s["documents"] for s in m["sources"]] == [14, 16] and m["empty_documents"] == 1
    tok = load_prepared(out)
    got = [
        tok.decode(d[:-1]) for s in ("train", "eval") for d in split_docs(read_split(out, s), 256)
    ]
    assert sorted(got) == sorted(docs)


def test_a_long_document_in_pieces_tokenizes_as_a_whole(bpe_dir, tmp_path, monkeypatch):
    """Cut at a line end between non-space characters, a byte-level BPE sees the same words."""
    whole = ""
    for p in stdlib_files():
        whole += p.read_text()
        if len(whole) > 300_000:
            break
    (tmp_path / "long.txt").write_text(whole)
    (tmp_path / "short.txt").write_text("x = 1\n" * 200)
    monkeypatch.setattr(readers, "CHUNK", 4096)
    inp = readers.find_inputs([tmp_path / "long.txt"])[0]
    assert len(list(readers.read(inp))) > 50
    out = tmp_path / "out"
    opts = PrepareOptions(str(bpe_dir / "tokenizer.json"), eval_fraction=0.5, min_eval_tokens=1)
    prepare([tmp_path / "short.txt", tmp_path / "long.txt"], out, opts)  # short: eval
    tok = load_prepared(out)
    assert tok.kind == "file"
    got = read_split(out, "train")
    assert np.array_equal(got, np.append(tok.encode([whole])[0], tok.eot_id))
    assert tok.decode(got[:-1]) == whole


def test_bytes_pieces_never_split_a_character(tmp_path, monkeypatch):
    text = "数据λ😀" * 5000  # no newline at all: cut at character boundaries
    (tmp_path / "a.txt").write_text(text)  # document 0: eval at eval_fraction 0.5
    (tmp_path / "b.txt").write_text("b" * 100)
    monkeypatch.setattr(readers, "CHUNK", 1000)
    out = tmp_path / "out"
    prepare([tmp_path], out, PrepareOptions("bytes", eval_fraction=0.5, min_eval_tokens=1))
    assert BytesTokenizer().decode(read_split(out, "eval")) == text + EOT


# ---- training on it ------------------------------------------------------------------------


def test_tokens_source_reads_a_prepared_folder(bpe_dir):
    src = build("tokens", dir=str(bpe_dir))
    m = src.manifest
    assert src.vocab_size == m["vocab_size"] and src.n_train == m["train"]["tokens"]
    assert src.batch(3, 8, 16).shape == (8, 17) and src.eval_batch(4, 16).shape == (4, 17)
    ev = read_split(bpe_dir, "eval")
    row = src.eval_batch(4, 16)[0].numpy()
    assert np.array_equal(row, ev[:17])  # eval windows come from eval.bin
    d = src.describe()
    assert d["tokenizer"] == "bpe" and d["n_eval_documents"] == 6 and d["vocab_size"] < 401
    assert build("tokens", dir=str(bpe_dir), vocab_size=512).vocab_size == 512
    with pytest.raises(ValueError, match=r"data\.params\.dtype: comes from dir's manifest"):
        build("tokens", dir=str(bpe_dir), dtype="uint32")
    with pytest.raises(ValueError, match=r"data\.params\.vocab_size: 300 < the prepared"):
        build("tokens", dir=str(bpe_dir), vocab_size=300)
    with pytest.raises(ValueError, match=r"data\.params\.dir: .* has no manifest\.json"):
        build("tokens", dir=str(bpe_dir.parent))
    n = m["eval"]["tokens"]
    with pytest.raises(ValueError, match=rf"eval\.bin holds {n:,} tokens, fewer than one eval"):
        src.eval_batch(64, 64)


@pytest.fixture(scope="module")
def stdlib_bytes():
    return build("python_stdlib", tokenizer="bytes")


def test_stdlib_source_is_the_stdlib_held_out_by_file(stdlib_bytes):
    src = stdlib_bytes
    m = src.manifest
    files = stdlib_files()
    root = stdlib_root()
    assert m["corpus"]["python"] == platform.python_version() and m["corpus"]["files"] == len(files)
    assert len(files) > 100 and not any(
        set(p.relative_to(root).parts) & set(SKIP_DIRS) for p in files
    )
    assert m["tokenizer"]["kind"] == "bytes" and src.vocab_size == 257
    texts = [p.read_bytes() for p in files if p.stat().st_size]
    assert len(m["skipped"]) == len(files) - len(texts)  # the empty __init__.py files
    want = {"train": [], "eval": []}
    for i, t in enumerate(texts):
        want["eval" if is_eval(i, 0.02) else "train"].append(t)
    for s in ("train", "eval"):
        docs = split_docs(read_split(src.folder, s), 256)
        assert [d[:-1].astype(np.uint8).tobytes() for d in docs] == want[s]  # whole files
    assert m["eval"]["documents"] == math.floor(len(texts) * 0.02 + 0.5)
    assert m["eval"]["tokens"] >= 64 * 65  # one eval batch at the defaults
    again = build("python_stdlib", tokenizer="bytes")  # from the cache: same folder, untouched
    assert again.folder == src.folder and again.manifest["created"] == m["created"]
    with pytest.raises(ValueError, match=r"data\.params\.vocab_size: only with tokenizer 'bpe'"):
        build("python_stdlib", tokenizer="bytes", vocab_size=512)


def test_one_training_run_on_the_stdlib(stdlib_bytes, tmp_path):
    spec = TrialSpec(
        model=ModelSpec(size="", d_model=32, n_layers=1, n_heads=2),
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("constant", 1),
        data=DataSpec("python_stdlib", params={"tokenizer": "bytes"}),
        batch_size=8,
        seq_len=64,
        total_steps=4,
        eval_batch_size=16,
    )
    from scalelab.train import train

    rec = train(Trial(spec, RunConfig(eval_every=4, noise_every=0)), tmp_path / "t")
    assert rec["status"] == "completed" and rec["steps_done"] == 4
    first = pq.read_table(tmp_path / "t" / "curve.parquet").to_pylist()[0]
    assert abs(first["train_loss"] - math.log(257)) < 0.3  # starts near uniform over bytes
    assert math.isfinite(rec["final_eval_loss"]) and rec["final_eval_loss"] < first["train_loss"]


# ---- the command ---------------------------------------------------------------------------


def test_cli_prepares_and_says_what_it_wrote(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["data", "prepare", str(corpus[0]), "--out", str(out), "--tokenizer", "bytes"]
    with pytest.raises(SystemExit) as e:
        main(argv + ["--eval-fraction", "0.1", "--min-eval-tokens", "100"])
    text = capsys.readouterr().out
    assert e.value.code == 0, text
    assert f"{out}: 60 documents" in text and "(bytes, vocabulary 257, uint16)" in text
    assert "  eval          6 documents" in text
    assert f'DataSpec("tokens", params={{"dir": "{out}"}})' in text
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.bin",
        "manifest.json",
        "tokenizer.json",
        "train.bin",
    ]


def test_the_bpe_learns_from_a_sample_when_asked(corpus, tmp_path):
    opts = PrepareOptions(vocab_size=400, eval_fraction=0.1, min_eval_tokens=100)
    small = dataclasses.replace(opts, bpe_sample_chars=2000)  # about one document
    m = prepare([corpus[0]], tmp_path / "out", small)
    assert m["vocab_size"] < 380 and m["options"]["bpe_sample_chars"] == 2000
