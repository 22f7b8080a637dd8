"""How li2025_steplaw_*.csv beside this file were made (run on a checkout of step-law/steplaw).

    python tests/data/make_li2025_steplaw_lr_batch.py <steplaw checkout> tests/data

Reads the checkout's data/dense_lr_bs_loss.csv, data/moe_lr_bs_loss.csv and
data/1004_fitted_lr_bs_scaling_model_parameters.csv; standard library only. Values are copied
as the source spells them (no float round trip); rows are sorted by (N, D, lr, batch size).
See tests/data/README.md ("li2025_steplaw") for the columns and the published numbers.
"""

import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

SEQ_LEN = 2048  # dense runs: the source has no seq_len column; fit_tool.py assumes 2048
SELECT_REL = 0.0025  # fit_tool.query_optimal_lr_bs_data: |smooth/min - 1| < 0.0025 per (N, D)

DENSE = (  # output column <- source column
    ("params_nonembed", "N"),
    ("tokens", "D"),
    ("lr", "lr"),
    ("batch_size_seqs", "bs"),
    ("steps", "ti"),
    ("loss_smooth", "smooth loss"),
    ("loss_last", "loss"),
    ("hidden", "h"),
    ("ffn_hidden", "ffnh"),
    ("heads", "numh"),
    ("layers", "numl"),
)
MOE = (
    ("moe_name", "moe_name"),
    ("params_total", "N"),
    ("params_active", "Na"),
    ("tokens", "D"),
    ("lr", "lr"),
    ("batch_size_seqs", "bs"),
    ("seq_len", "seq_len"),
    ("steps", "ti"),
    ("loss_smooth", "smooth loss"),
    ("loss_last", "loss"),
    ("top_k", "topk"),
    ("num_experts", "nume"),
    ("expert_hidden", "moeh"),
    ("shared_expert_hidden", "sed"),
    ("hidden", "h"),
    ("layers", "numl"),
)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_tokens(rows: list[dict[str, str]], seq_len) -> None:
    """D = batch (sequences) x seq_len x steps, to the rounding of D in the source (< 0.3%)."""
    for r in rows:
        sl = int(r["seq_len"]) if seq_len is None else seq_len
        got = int(r["bs"]) * sl * int(r["ti"])
        if abs(got / float(r["D"]) - 1) > 3e-3:
            raise ValueError(f"tokens do not match batch x seq_len x steps: {r}")


def selected(rows: list[dict[str, str]]) -> list[int]:
    """1 where Step Law's fit code keeps the run: within 0.25% of its (N, D) cell's best."""
    best: dict[tuple[str, str], float] = defaultdict(lambda: math.inf)
    for r in rows:
        key = (r["N"], r["D"])
        best[key] = min(best[key], float(r["smooth loss"]))
    return [
        int(abs(float(r["smooth loss"]) / best[(r["N"], r["D"])] - 1) < SELECT_REL) for r in rows
    ]


def order(r: dict[str, str]) -> tuple:
    return (float(r["N"]), float(r["D"]), float(r["lr"]), int(r["bs"]))


def write(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def dense(src: Path, dest: Path) -> None:
    rows = sorted(read(src / "data" / "dense_lr_bs_loss.csv"), key=order)
    check_tokens(rows, SEQ_LEN)
    header = [o for o, _ in DENSE]
    header[4:4] = ["seq_len", "batch_size_tokens"]
    out = []
    for r, sel in zip(rows, selected(rows), strict=True):
        vals = [r[s] for _, s in DENSE]
        vals[4:4] = [SEQ_LEN, int(r["bs"]) * SEQ_LEN]
        out.append([*vals, sel])
    write(dest / "li2025_steplaw_lr_batch_dense.csv", [*header, "fit_selected"], out)


def moe(src: Path, dest: Path) -> None:
    rows = sorted(
        read(src / "data" / "moe_lr_bs_loss.csv"), key=lambda r: (r["moe_name"], *order(r))
    )
    check_tokens(rows, None)
    header = [o for o, _ in MOE]
    header.insert(7, "batch_size_tokens")
    out = []
    for r in rows:
        vals = [r[s] for _, s in MOE]
        vals.insert(7, int(r["bs"]) * int(r["seq_len"]))
        out.append(vals)
    write(dest / "li2025_steplaw_lr_batch_moe.csv", header, out)


def quantile(xs: list[float], q: float) -> float:
    """numpy.quantile's default (linear) rule."""
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def published(src: Path, dest: Path) -> None:
    """Their 1000 bootstrap fits: log lr = a + b log N + c log D, log B_tokens = d + e log D.

    fit_tool.get_mean_lr_bs_scaling_model (used by `fit_tool.py pred-opt-lr-bs`) averages each
    column; the law is lr = exp(mean a) N^(mean b) D^(mean c), B = exp(mean d) D^(mean e).
    """
    rows = read(src / "data" / "1004_fitted_lr_bs_scaling_model_parameters.csv")
    out = []
    for name in rows[0]:
        xs = [float(r[name]) for r in rows]
        mean = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        q025, q975 = quantile(xs, 0.025), quantile(xs, 0.975)
        out.append([name, len(xs), repr(mean), repr(sd), repr(q025), repr(q975)])
    header = ["param", "n_boot", "mean", "sd", "q025", "q975"]
    write(dest / "li2025_steplaw_published_fit.csv", header, out)


def main(src: Path, dest: Path) -> None:
    dense(src, dest)
    moe(src, dest)
    published(src, dest)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
