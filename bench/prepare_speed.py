"""Throughput of `scalelab data prepare` on the Python standard library's source (the
python_stdlib corpus, ~12 MB of .py): bytes, and a byte-level BPE trained here.

    .venv/bin/python bench/prepare_speed.py [--vocab 4096 8192] [--repeat 1]

Each preparation runs in a fresh child process; it prints input MB/s on the wall clock, MB per
CPU-second (all threads; less sensitive to other load on the machine), the BPE training time
and the child's peak RSS (VmHWM). The ratio is the BPE's wall time over the bytes tokenizer's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
from scalelab.data.prepare import PrepareOptions, prepare
from scalelab.data.stdlib import stdlib_files
tok, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = prepare(stdlib_files(), out, PrepareOptions(tok, vocab_size=vocab, eval_fraction=0.02))
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
tokens = m["train"]["tokens"] + m["eval"]["tokens"]
print(json.dumps(m["timing"] | {"tokens": tokens, "peak_rss_mb": peak}))
"""


def run(tokenizer: str, vocab: int, folder: Path) -> dict:
    out = folder / f"{tokenizer}-{vocab}-{time.monotonic_ns()}"
    args = [sys.executable, "-c", CHILD, tokenizer, str(vocab), str(out)]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("bytes", 257)] + [("bpe", v) for v in a.vocab]
        walls: dict[str, float] = {}
        for _ in range(a.repeat):
            for tok, vocab in cases:
                t = run(tok, vocab, Path(tmp))
                name = tok if tok == "bytes" else f"bpe {vocab}"
                walls[name] = t["total_s"]
                print(
                    f"{name:<9} {t['input_mb']:.1f} MB -> {t['tokens']:,} tokens: "
                    f"{t['total_s']:.2f} s wall, {t['mb_per_s']:.2f} MB/s, "
                    f"{t['input_mb'] / t['cpu_s']:.2f} MB per CPU-s, tokenizer training "
                    f"{t['tokenizer_s']:.2f} s, peak RSS {t['peak_rss_mb']:.0f} MB"
                )
        for name, wall in walls.items():
            if name != "bytes":
                print(f"{name}: {wall / walls['bytes']:.0f}x the bytes tokenizer's wall time")


if __name__ == "__main__":
    main()
