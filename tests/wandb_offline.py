"""Read back what an offline W&B run wrote (its run-<id>.wandb records; wandb >= 0.2x no longer
ships a Python reader). The file is `:W&B` + 3 header bytes, then a LevelDB-style log: 32 KiB
blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last), each
record a `wandb_internal_pb2.Record`."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: str | Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B datastore"
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # zero padding
            pos += left
            continue
        if pos + HEADER + length > len(data):  # still being written
            return
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


class OfflineRun:
    """The run record, config, summary, history and artifacts of one offline-run-* folder."""

    def __init__(self, folder: str | Path, wait_s: float = 30.0):
        """wait_s: W&B's service writes the file after run.finish() returns; wait for the
        run's exit record that long."""
        self.folder = Path(folder)
        deadline = time.monotonic() + wait_s
        while True:
            files = list(self.folder.glob("run-*.wandb"))
            kinds = [r.WhichOneof("record_type") for f in files for r in records(f)]
            if "exit" in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        (self.datastore,) = files
        self.run = None
        self.config: dict = {}
        self.summary: dict = {}
        self.history: list[dict] = []
        self.artifacts: list = []
        for r in records(self.datastore):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                self.run = r.run
                for item in r.run.config.update:
                    self.config[item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in r.config.update:
                    self.config[item.key] = json.loads(item.value_json)
            elif kind == "summary":
                for item in r.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    self.summary[key] = json.loads(item.value_json)
            elif kind == "history":
                row = {}
                for item in r.history.item:
                    row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
                self.history.append(row)
            elif kind == "artifact":
                self.artifacts.append(r.artifact)

    def logged(self, key: str) -> dict:
        """The last history value of a logged object (table, image), e.g. its `path`."""
        value = {}
        for row in self.history:
            for k, v in row.items():
                if k.startswith(key + "/"):
                    value[k[len(key) + 1 :]] = v
        return value

    def file(self, relpath: str) -> Path:
        return self.folder / "files" / relpath

    def table(self, key: str) -> dict:
        """A logged wandb.Table: {"columns": [...], "data": [[...], ...]}."""
        return json.loads(self.file(self.logged(key)["path"]).read_text())


def offline_runs(folder: str | Path) -> list[OfflineRun]:
    """A folder's runs in the order they started (folder names carry whole seconds only, so two
    runs started in the same second would sort by id instead)."""
    runs = [OfflineRun(p) for p in Path(folder).glob("wandb/offline-run-*")]
    return sorted(runs, key=lambda r: (r.run.start_time.seconds, r.run.start_time.nanos))
