"""How the CSVs beside this file were made (run from a checkout of fabian-sp/lr-scheduling).

Each CSV: step (optimizer iterations), lr (the logged train_lr at that iteration), loss (the
logged validation loss; empty where only the LR was logged), one row every 200 iterations.
The WSD runs' logs start at the cooldown (iteration 40,000: they resume the constant run's
checkpoint), so their CSV is the constant run's rows before it, then the cooldown's rows.
"""

import json
import sys
from pathlib import Path

RUNS = {  # csv stem -> data/<file> of the source repository (124M, SlimPajama, seed 0)
    "constant": "stable-124m_slimpajama_llama_norm_nlayers12_nhead12_lr{lr}_sched_wsd_warmup300_decay_linear_0.0_iter50000",
    "cosine": "cos-zero-124m_slimpajama_llama_norm_nlayers12_nhead12_lr{lr}_sched_cos_warmup300_decay_sqrt_0.0_iter50000",
    "wsd": "ann124-0.2_slimpajama_llama_norm_nlayers12_nhead12_lr{lr}_sched_wsd_warmup300_decay_linear_0.2_iter50000",
}
LRS = ("0.0001", "0.0005", "0.001", "0.002")
TAIL = "_bs50x2_ws2_seed0_data_seed1337.json"


def rows(doc: dict) -> list[tuple[int, float, float | None]]:
    tr, va = doc["history"]["train"], doc["history"]["val"]
    lr = dict(zip(tr["iter"], tr["train_lr"], strict=True))
    loss = dict(zip(va["iter"], va["val_loss"], strict=True))
    out = []
    for it in range(200, 50001, 200):
        if it in lr:
            out.append((it, lr[it], loss.get(it)))
    return out


def load(repo: Path, kind: str, lr: str) -> list:
    return rows(json.loads((repo / "data" / (RUNS[kind].format(lr=lr) + TAIL)).read_text()))


def main(repo: Path, dest: Path) -> None:
    for kind in RUNS:
        for lr in LRS:
            got = load(repo, kind, lr)
            if kind == "wsd":  # the cooldown was branched off the constant run at its start
                got = [r for r in load(repo, "constant", lr) if r[0] < got[0][0]] + got
            text = "step,lr,loss\n" + "".join(
                f"{s},{v!r},{'' if y is None else repr(y)}\n" for s, v, y in got
            )
            (dest / f"{kind}_lr{lr}.csv").write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
