"""`scalelab data prepare` at size: memory stays bounded on a corpus larger than the memory the
test allows (a child process, its peak RSS from /proc), Ctrl-C leaves nothing, and the
python_stdlib source with its default BPE trains a tiny model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration

LIMIT_MB = 128  # peak RSS the prepare process may reach (python + numpy alone: ~35 MB)
BIG_MB = 2 * LIMIT_MB  # one document of this size, streamed in pieces


PEAK = "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1])"


def peak_rss_mb(code: str) -> float:
    """Run `code` in a child Python; returns its peak RSS (VmHWM: the child's own memory, unlike
    wait4's ru_maxrss, which also counts the parent's pages at the fork) in MB."""
    out = subprocess.run(
        [sys.executable, "-c", f"import re\n{code}\n{PEAK}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1]) / 1024


def test_memory_stays_bounded_on_a_corpus_larger_than_it(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    line = "line {}: the quick brown fox jumps over the lazy dog, café 数据 λ\n"
    block = "".join(line.format(i) for i in range(20_000)).encode()
    with open(src / "a_big.txt", "wb") as f:
        for _ in range(math.ceil((BIG_MB << 20) / len(block))):
            f.write(block)
    for i in range(39):
        (src / f"doc{i:02}.txt").write_text(f"doc {i}\n" * 1000)
    big = (src / "a_big.txt").stat().st_size
    assert big > LIMIT_MB << 20
    out = tmp_path / "out"
    code = (
        "from scalelab.data.prepare import PrepareOptions, prepare\n"
        f"prepare([{str(src)!r}], {str(out)!r}, PrepareOptions('bytes', eval_fraction=0.05))"
    )
    rss = peak_rss_mb(code)
    assert rss < LIMIT_MB, f"peak RSS {rss:.0f} MB"
    m = json.loads((out / "manifest.json").read_text())
    assert m["train"]["documents"] == 38 and m["eval"]["documents"] == 2
    assert m["sources"][0]["tokens"]["train"] == big + 1  # every byte, then end-of-text
    ids = np.memmap(out / "train.bin", np.uint16, mode="r")
    assert ids[: len(block)].astype(np.uint8).tobytes() == block and ids[big] == 256


def test_stdlib_with_its_bpe_trains_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALELAB_CACHE", str(tmp_path / "cache"))
    from scalelab.config import (
        DataSpec,
        ModelSpec,
        OptimSpec,
        RunConfig,
        ScheduleSpec,
        Trial,
        TrialSpec,
    )
    from scalelab.data import build
    from scalelab.data.texttok import load_prepared
    from scalelab.train import train

    src = build("python_stdlib")  # the default: a byte-level BPE of 4,096 tokens
    m = src.manifest
    assert m["tokenizer"]["kind"] == "bpe" and src.vocab_size == 4096 and m["dtype"] == "uint16"
    tok = load_prepared(src.folder)
    ev = np.fromfile(src.folder / "eval.bin", np.uint16)
    first = tok.decode(ev[: ev.tolist().index(tok.eot_id)])
    held_out = [s["path"] for s in m["sources"] if s["eval_documents"]]
    assert open(held_out[0], encoding="utf-8").read() == first  # a whole file, decoded back
    assert m["train"]["characters"] / m["train"]["tokens"] > 3  # BPE merges: ~3.5 chars/token
    spec = TrialSpec(
        model=ModelSpec(size="", d_model=32, n_layers=1, n_heads=2),
        optim=OptimSpec(lr=3e-3),
        schedule=ScheduleSpec("constant", 1),
        data=DataSpec("python_stdlib"),
        batch_size=8,
        seq_len=64,
        total_steps=4,
        eval_batch_size=16,
    )
    rec = train(Trial(spec, RunConfig(eval_every=4, noise_every=0)), tmp_path / "t")
    assert rec["status"] == "completed" and math.isfinite(rec["final_eval_loss"])
    assert rec["final_eval_loss"] < math.log(4096)


def test_ctrl_c_leaves_nothing(tmp_path):
    """Interrupted while writing train.bin: exit 130, no OUT, no temp folder."""
    import signal
    import time

    (tmp_path / "in").mkdir()
    block = ("x = 1\n" * 100_000).encode()
    with open(tmp_path / "in" / "big.txt", "wb") as f:
        for _ in range(300):  # 180 MB: several seconds of work
            f.write(block)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "scalelab.cli", "data", "prepare", str(tmp_path / "in")]
    p = subprocess.Popen([*cmd, "--out", str(out), "--tokenizer", "bytes"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(
        d.name.endswith(".tmp") and (d / "train.bin").exists() for d in tmp_path.iterdir()
    ):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 130, p.stderr.read().decode()
    p.stderr.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in"]
