"""Clusters: cluster.yaml against Ray's own schema, study files that run on their own, and a
real 3-node Ray cluster on this machine (`ray start --head` + 2 × `ray start --address`) that
runs a study submitted with `ray job submit`, then loses a worker node mid-study.

Every node gets its own temp dir (as separate machines would: a shared one lets one node's
runtime-env cleanup delete the job's working dir under another) and all processes share a
fresh auth token. The fixture kills every process it started, by pid, even on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# ---- cluster.yaml and study files (offline) ----


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg = prepare_config(raw)
    validate_config(cfg)  # Ray's JSON schema plus its own cross-checks; raises if invalid
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # a CPU head
    assert head["resources"]["driver"] > 0  # where driver_resources={"driver": 1} pins drivers
    gpu = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert gpu and all(t["min_workers"] == 0 for t in gpu)  # GPU nodes only while needed
    assert any(t["node_config"].get("InstanceMarketOptions") for t in gpu)  # spot somewhere
    # the project is copied to every node and installed from there
    (mount,) = [m for m, src in cfg["file_mounts"].items() if src == "."]
    for cmds in (cfg["head_setup_commands"], cfg["worker_setup_commands"]):
        assert f"pip install -q -e {mount}" in cmds
        assert any("torch==" in c for c in cmds)
    # the results root is set in exactly one place, to an absolute path on the shared mount
    text = (REPO / "cluster.yaml").read_text()
    (line,) = [ln for ln in text.splitlines() if "export SCALELAB_STORAGE=" in ln]
    storage = line.split("SCALELAB_STORAGE=")[1].split("'")[0]
    assert storage.startswith("/mnt/efs/") and "://" not in storage
    assert any("/mnt/efs" in opt for opt in cfg["docker"]["run_options"])


def test_results_root_comes_from_scalelab_storage_and_uris_are_refused(monkeypatch, tmp_path):
    from scalelab import launch
    from scalelab.config import SpecError
    from scalelab.sweep import SweepSpec

    spec = SweepSpec("s1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCALELAB_STORAGE", raising=False)
    assert launch.study_dir(spec) == tmp_path / "results" / "s1"
    monkeypatch.setenv("SCALELAB_STORAGE", "/mnt/efs/scalelab")
    assert launch.study_dir(spec) == Path("/mnt/efs/scalelab/s1")
    assert launch.study_dir(spec, "/elsewhere/x") == Path("/elsewhere/x")  # --storage wins
    monkeypatch.setenv("SCALELAB_STORAGE", "s3://bucket/scalelab")
    with pytest.raises(SpecError, match="storage: .*mount"):
        launch.study_dir(spec)


CHECK_STUDIES = """
import sys
from scalelab import study, sweep
for path in sys.argv[1:]:
    m = study.load(path)
    specs = [m.SPEC, *getattr(m, "PRESETS", {}).values()]
    print("STUDY", path, sum(len(sweep.expand(s)) for s in specs))
"""


def test_study_files_run_when_copied_alone_to_another_folder(tmp_path):
    """What `ray submit cluster.yaml experiments/X.py` does: X.py alone, run with python."""
    studies = sorted((REPO / "experiments").glob("*.py"))
    assert studies
    for src in studies:
        shutil.copy(src, tmp_path / src.name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    r = subprocess.run([sys.executable, "-c", CHECK_STUDIES, *(s.name for s in studies)], **run)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = {
        ln.split()[1]: ln.split()[2] for ln in r.stdout.splitlines() if ln.startswith("STUDY ")
    }
    assert sorted(counts) == [s.name for s in studies]
    assert all(int(n) >= 1 for n in counts.values()), counts  # every SPEC expands to trials
    for src in studies:  # `python X.py ARGS` is `scalelab run X.py ARGS`; --help stops there
        r = subprocess.run([sys.executable, src.name, "--help"], **run)
        assert r.returncode == 0 and "Run a study" in r.stdout, f"{src.name}: {r.stderr[-2000:]}"
    assert not (tmp_path / "results").exists()


# ---- a real 3-node cluster on this machine ----


def _free_ports(k: int) -> list[int]:
    """k distinct free ports: all bound at once, so two calls in a row cannot get the same
    port back (which once gave the dashboard a port the client server then took)."""
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _descendants(pids: list[int]) -> list[int]:
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _group(pgid: int) -> list[int]:
    """Processes of one `ray start` (they keep its process group) and everything they spawned."""
    members = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(p.name)) == pgid:
                members.append(int(p.name))
        except (OSError, ValueError):
            pass
    return sorted(set(members + _descendants(members)))


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LocalCluster:
    """A head and worker nodes, each a `ray start` in its own session (process group)."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="slc", dir="/tmp"))  # short: socket paths
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            "RAY_health_check_period_ms": "1000",  # a lost node is declared dead in ~10 s
            "RAY_health_check_failure_threshold": "10",
        }
        self.groups: list[int] = []  # one process group per node (the head first)
        self.workers: list[int] = []  # the worker nodes' groups
        self.gcs = self.api = ""

    def _start(self, args: list[str], agent_port: int | None = None) -> int:
        node_tmp = self.tmp / f"n{len(self.groups)}"
        agent = agent_port or _free_ports(1)[0]
        p = subprocess.Popen(
            [str(BIN / "ray"), "start", "--temp-dir", str(node_tmp), "--disable-usage-stats"]
            + ["--dashboard-agent-listen-port", str(agent)]
            + ["--object-store-memory", str(100 * 2**20), *args],
            env=self.env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.groups.append(p.pid)
        out, _ = p.communicate(timeout=180)
        if p.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{out[-3000:]}")
        return p.pid

    def head(self, cpus: int, resources: dict) -> None:
        port, dash, client, agent = _free_ports(4)
        self.gcs, self.api = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        self._start(
            ["--head", "--port", str(port), "--num-cpus", str(cpus)]
            + ["--resources", json.dumps(resources), "--include-dashboard", "true"]
            + ["--dashboard-port", str(dash), "--ray-client-server-port", str(client)],
            agent_port=agent,
        )

    def worker(self, cpus: int, resources: dict) -> int:
        return self._start(
            ["--address", self.gcs, "--num-cpus", str(cpus), "--resources", json.dumps(resources)]
        )

    def kill_node(self, pgid: int) -> None:
        _kill(_group(pgid))  # raylet, agents and its workers at once, like a lost machine

    def submit(self, workdir: Path, args: list[str], env_vars: dict, sid: str) -> subprocess.Popen:
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.api, "--submission-id", sid]
        cmd += ["--working-dir", str(workdir)]
        cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars}), "--", "python", *args]
        return subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def state(self, submission_id: str) -> dict:
        """Nodes, and the actors (dead ones too) of one job, from Ray's state API."""
        r = subprocess.run(
            [sys.executable, "-c", STATE, self.api],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        state = json.loads(r.stdout.splitlines()[-1])
        job = state["jobs"][submission_id]
        state["actors"] = [a for a in state["actors"] if a["job"] == job]
        return state

    def wait_for(self, submission_id: str, what: str, ok, timeout_s: float = 180) -> dict:
        """Ray's state once `ok(state)` holds: the GCS updates its tables when it notices (a lost
        node is marked DEAD after its health checks fail, seconds after the kill, later on a
        loaded machine), so poll until then; fail naming `what` and the last state seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state(submission_id)
            if ok(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Ray's state did not show {what} within {timeout_s:.0f} s; "
                    f"last nodes: {state['nodes']}"
                )
            time.sleep(1)

    def stop(self) -> None:
        pids = [pid for g in self.groups for pid in _group(g)]
        _kill(pids)
        deadline = time.time() + 30
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        for _ in range(3):  # a dying process may still add a log file while we delete
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not self.tmp.exists():
                break
            time.sleep(1)


STATE = """
import json, sys
from ray.util.state import list_actors, list_jobs, list_nodes
api = sys.argv[1]
nodes = [{"id": n.node_id, "head": n.is_head_node, "state": n.state}
         for n in list_nodes(address=api, limit=1000)]
jobs = {j.submission_id: j.job_id for j in list_jobs(address=api) if j.submission_id}
actors = [{"cls": a.class_name, "job": a.job_id, "state": a.state, "node": a.node_id}
          for a in list_actors(address=api, limit=10000, detail=True)]
print(json.dumps({"nodes": nodes, "actors": actors, "jobs": jobs}))
"""


@pytest.fixture(scope="module")
def cluster():
    """Head: 1 CPU and the custom resource "driver"; 2 workers: 1 CPU and "trainer" each."""
    c = LocalCluster()
    try:
        c.head(cpus=1, resources={"driver": 2})
        c.workers = [c.worker(cpus=1, resources={"trainer": 1}) for _ in range(2)]
        yield c
    finally:
        c.stop()


STUDY = """
from scalelab.config import DataSpec, ModelSpec, OptimSpec, RunConfig, ScheduleSpec, TrialSpec
from scalelab.sweep import SweepSpec

SPEC = SweepSpec(
    {name!r},
    TrialSpec(model=ModelSpec("50K"), optim=OptimSpec(lr=3e-3), schedule=ScheduleSpec("cosine", 5),
              data=DataSpec("pcfg"), batch_size=8, seq_len=32, total_steps={steps},
              eval_batch_size=16),
    {grid},
    run=RunConfig(eval_every={every}, checkpoint_every={every}),
    driver_resources={driver!r},
    max_failures=2,
)

if __name__ == "__main__":
    from scalelab.cli import run_file

    run_file(__file__)
"""


def _study(tmp_path: Path, name: str, **kw) -> Path:
    """A folder holding only the study file: what `ray job submit --working-dir` uploads."""
    job = tmp_path / "job"
    job.mkdir()
    (job / f"{name}.py").write_text(STUDY.format(name=name, **kw))
    return job


def _assert_every_step_once(root: Path, steps: int, n: int) -> pl.DataFrame:
    runs = pl.read_parquet(root / "runs.parquet")
    curves = pl.read_parquet(root / "curves.parquet")
    assert runs["status"].to_list() == ["completed"] * n, runs.select("trial", "status", "error")
    for t in runs["trial"]:
        assert curves.filter(pl.col("trial") == t)["step"].sort().to_list() == list(
            range(1, steps + 1)
        ), t
    return runs


@pytest.mark.slow
def test_ray_job_submit_runs_a_study_across_nodes_with_drivers_pinned_to_the_head(
    cluster, tmp_path
):
    """A one-worker trial and a 2-worker FSDP trial; driver_resources={"driver": 1}: every
    trial actor lands on the head (the only node with "driver"), which then has no CPU left,
    so the two FSDP ranks run on the two worker nodes, one each."""
    job = _study(
        tmp_path,
        "multi",
        steps=30,
        every=10,
        grid='points=[{"workers": 1, "seed": 0}, {"workers": 2, "seed": 1}]',
        driver={"driver": 1},
    )
    storage = tmp_path / "shared"  # SCALELAB_STORAGE: the one results root of the cluster
    args = ["multi.py", "--no-wandb", "--no-progress"]
    p = cluster.submit(job, args, {"SCALELAB_STORAGE": str(storage)}, sid="multi")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-4000:]

    root = storage / "multi"
    runs = _assert_every_step_once(root, 30, 2)
    recs = [json.loads((root / "trials" / t / "trial.json").read_text()) for t in runs["trial"]]
    assert {r["world_size"] for r in recs} == {1, 2}

    state = cluster.state("multi")
    head = {n["id"] for n in state["nodes"] if n["head"]}
    workers = {n["id"] for n in state["nodes"] if not n["head"]}
    assert len(head) == 1 and len(workers) == 2
    # each trial records the node its driver (the Tune trial actor) ran on: the head;
    # the FSDP trial records its ranks' nodes: one on each worker node
    assert {r["driver_node"] for r in recs} == head
    (fsdp,) = [r for r in recs if r["world_size"] == 2]
    assert len(fsdp["rank_nodes"]) == 2 and set(fsdp["rank_nodes"]) == workers


@pytest.mark.slow
def test_losing_a_worker_node_mid_study_retries_its_trial_on_the_other(cluster, tmp_path):
    """Two checkpointed trials pinned to the worker nodes ("trainer": 1 each, so one trial per
    node). Once a node's trial has a checkpoint, that node dies (all its processes SIGKILLed at
    once). Its trial is retried on the other node from the checkpoint; the study completes."""
    steps = 400
    job = _study(
        tmp_path,
        "nodeloss",
        steps=steps,
        every=25,
        grid='grid={"seed": [0, 1]}',
        driver={"trainer": 1},
    )
    storage = tmp_path / "shared"
    root = storage / "nodeloss"
    args = ["nodeloss.py", "--no-wandb", "--no-progress"]
    p = cluster.submit(job, args, {"SCALELAB_STORAGE": str(storage)}, sid="nodeloss")
    try:
        deadline, victim, lost = time.time() + 300, None, None
        while time.time() < deadline and p.poll() is None and victim is None:
            for node in cluster.workers:
                trial = _trial_on(node)
                tdir = root / "trials" / str(trial)
                if trial and list(tdir.glob("ckpt/step_*/meta.json")):
                    if json.loads((tdir / "trial.json").read_text())["status"] == "running":
                        victim, lost = node, trial
                        cluster.kill_node(node)
                        break
            time.sleep(0.2)
        assert victim, "no trial got part-way on a worker node"
        out, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out[-4000:]

    runs = _assert_every_step_once(root, steps, 2)
    rec = json.loads((root / "trials" / lost / "trial.json").read_text())
    assert 0 < rec["resumed_from"] < steps and rec["resumed_from"] % 25 == 0, rec

    def one_worker_node_dead(state: dict) -> bool:
        heads = [n["state"] for n in state["nodes"] if n["head"]]
        workers = sorted(n["state"] for n in state["nodes"] if not n["head"])
        return heads == ["ALIVE"] and workers == ["ALIVE", "DEAD"]

    state = cluster.wait_for(
        "nodeloss",
        "the killed worker node DEAD, the other and the head ALIVE",
        one_worker_node_dead,
    )
    (dead,) = [n["id"] for n in state["nodes"] if n["state"] == "DEAD"]
    (alive,) = [n["id"] for n in state["nodes"] if n["state"] == "ALIVE" and not n["head"]]
    # trial.json records where each trial's driver last ran: both finished on the survivor
    # (the lost one resumed there, see resumed_from); Ray's state API can drop dead actors
    drivers = {
        json.loads((root / "trials" / t / "trial.json").read_text())["driver_node"]
        for t in runs["trial"]
    }
    assert drivers == {alive} and dead != alive
    assert len(runs) == 2


def _trial_on(pgid: int) -> str | None:
    """The trial a node is running: Tune starts each trial in a working dir named after it."""
    for pid in _group(pgid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                return Path(os.readlink(f"/proc/{pid}/cwd")).name
        except OSError:
            continue
    return None
