"""Sweeps on a real Dask cluster whose workers cannot see the client's disk.

A real `dask scheduler` and `dask worker` processes are started as separate commands on 127.0.0.1. Each
worker runs in a private mount namespace (`unshare --mount`, root) with a tmpfs over the client's outputs
folder and over the checkout's `outputs/` (the client's model cache), and has its own working directory,
`WORKBENCH_OUTPUTS` and model cache (a copy, as a machine with the models installed). The client runs
`workbench sweep --scheduler ...` as a subprocess, and the points must arrive in *its* outputs.

On this one host the two workers have the same machine fingerprint (same host hash and hardware); the
tests tell them apart by the worker name and id and working directory each point records (env.json `worker`).

Cost: each test starts a scheduler and two workers (a few seconds) and runs nano points with the tiniest
settings; about 1-2 minutes each on an idle 2-core machine, more when it is shared.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from workbench.paths import REPO_ROOT
from workbench.sweep.outcome import PointStatus

DASK = str(Path(sys.executable).parent / "dask")
TINY = {
    "model": "nano",
    "prompt_tokens": 8,
    "gen_tokens": 4,
    "requests": 1,
    "trials": 1,
    "warmup": 0,
    "perplexity_chunks": 0,
    "task_count": 0,
    "fidelity_count": 0,
    "kv_bits": [],
}
BITS = [[{"bits": 8}], [{"bits": 4}], [{"bits": 3}], [{"bits": 2}]]
START_S = 90


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not (os.geteuid() == 0 and shutil.which("unshare") and _can_unshare()),
    reason="needs root and `unshare --mount` to hide the client's outputs from the workers",
)


class Cluster:
    """A scheduler and workers as separate processes; every worker blind to the client's outputs."""

    def __init__(self, tmp_path: Path, client_outputs: Path):
        self.tmp_path, self.client_outputs = tmp_path, client_outputs
        self.hidden = [client_outputs, REPO_ROOT / "outputs"]
        self.workers: dict[str, subprocess.Popen] = {}
        file = tmp_path / "scheduler.json"
        self.scheduler = self._spawn(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            tmp_path / "scheduler.log",
            cwd=tmp_path,
        )
        deadline = time.time() + START_S
        while not file.is_file() and time.time() < deadline:
            time.sleep(0.2)
        self.address = json.loads(file.read_text())["address"]

    def _spawn(self, command, log: Path, *, cwd: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "w") as fh:
            return subprocess.Popen(
                command, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

    def add_worker(self, name: str, *, timed: bool = True) -> Path:
        home = self.tmp_path / f"worker-{name}"
        (home / "outputs").mkdir(parents=True)
        shutil.copytree(REPO_ROOT / "outputs" / "cache", home / "cache")  # the models this machine has installed
        env = {**os.environ, "WORKBENCH_OUTPUTS": str(home / "outputs"), "WORKBENCH_CACHE": str(home / "cache")}
        env["JUPYTER_PATH"] = install_own_kernel(home)
        for path in self.hidden:
            path.mkdir(parents=True, exist_ok=True)
        mounts = " && ".join(f"mount -t tmpfs tmpfs '{p}'" for p in self.hidden)
        worker = f"{DASK} worker {self.address} --name {name} --nworkers 1 --nthreads 1 --no-dashboard"
        worker += f" --local-directory '{home / 'dask'}'" + (" --resources timed=1" if timed else "")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && exec {worker}"]
        self.workers[name] = self._spawn(command, home / "worker.log", cwd=home, env=env)
        return home

    def wait_for(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(count, timeout=START_S)

    def kill(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def install_own_kernel(home: Path) -> str:
    """The worker's own `workbench` kernel spec, found first through JUPYTER_PATH: a machine installs its kernel,
    and a spec that another process rewrites in the shared environment cannot reach it."""
    from ipykernel.kernelspec import install

    from workbench.jupyter_kernel import KERNEL_NAME, kernel_env

    install(kernel_name=KERNEL_NAME, display_name="Workbench (MLX)", prefix=str(home / "kernel"), env=kernel_env())
    return str(home / "kernel" / "share" / "jupyter")


@pytest.fixture
def cluster(tmp_path, _outputs, nano_path, kernel):
    made = Cluster(tmp_path, _outputs)
    yield made
    made.close()


def write_sweep(tmp_path, name, variants, **fixed):
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, "experiment": "quantise", "fixed": {**TINY, **fixed}, "grid": {"variants": variants}}
    path.write_text(yaml.safe_dump({**spec, "timeout_s": 300, "retries": 1}))
    return path


def workbench(*args, outputs, **popen):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    command = [sys.executable, "-m", "workbench.cli", *args]
    if popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def points_of(outputs: Path, name: str) -> list[dict]:
    """Per verified point in the client's outputs: point.yaml and env.json."""
    from workbench.results import integrity

    scan = integrity.scan_sweep(outputs / "sweeps" / name)
    return [
        {"meta": integrity.read_point_meta(p), "env": json.loads((p / "env.json").read_text())} for p in scan.finished
    ]


def assert_no_duplicate_rows(outputs: Path, name: str, points: int) -> None:
    from workbench.results import store

    frame = store.load_sweep_results(name).collect()
    assert frame["point_id"].n_unique() == points
    per_point = frame.group_by("point_id").agg(pl.col("run_id").n_unique().alias("runs"), pl.len().alias("rows"))
    assert per_point["runs"].to_list() == [1] * points
    for directory in (outputs / "sweeps" / name).iterdir():
        if directory.is_dir():
            recorded = json.loads((directory / "manifest.json").read_text())["rows"]
            assert per_point.filter(point_id=directory.name)["rows"].item() == recorded


def test_sweep_on_two_workers_without_the_clients_disk(tmp_path, cluster, _outputs, nano_path):
    cluster.add_worker("alpha")
    cluster.add_worker("beta")
    cluster.wait_for(2)
    sentinel = _outputs / "client-only.txt"
    sentinel.write_text("the client's disk")
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:
        seen = client.run(lambda: (os.path.exists(str(sentinel)), os.getcwd(), os.environ["WORKBENCH_OUTPUTS"]))
    assert [v[0] for v in seen.values()] == [False, False]  # the separation is real
    assert len({v[1] for v in seen.values()}) == 2 and len({v[2] for v in seen.values()}) == 2

    # a model folder only the client has: refused before anything is written, naming the path and the worker
    local = shutil.copytree(nano_path, _outputs / "models" / "nano-local")
    missing = workbench("sweep", str(write_sweep(tmp_path, "far", BITS[:1], model=str(local))), "--scheduler",
                        cluster.address, outputs=_outputs)  # fmt: skip
    assert missing.returncode == 2, missing.stderr
    line = missing.stderr.strip()
    assert "\n" not in line and f"model directory {local} is missing on worker" in line, line
    assert not (_outputs / "sweeps" / "far").exists()

    proc = workbench("sweep", str(write_sweep(tmp_path, "spread", BITS)), "--scheduler", cluster.address, "--json",
                     outputs=_outputs)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["ran"] == 4 and summary["failed"] == 0 and summary["lost_workers"] == []
    assert sum(w["done"] for w in summary["per_worker"].values()) == 4
    points = points_of(_outputs, "spread")
    assert len(points) == 4  # verified in the client's outputs (parquet against manifest)
    assert_no_duplicate_rows(_outputs, "spread", 4)
    workers = {(p["env"]["worker"]["name"], p["env"]["worker"]["id"], p["env"]["worker"]["cwd"]) for p in points}
    machines = {json.dumps(p["env"]["machine"], sort_keys=True) for p in points}
    assert len(workers) == 2 and {w[0] for w in workers} == {"alpha", "beta"}  # two fingerprinted workers ...
    assert len(machines) == 1  # ... on one host: same machine fingerprint, told apart by worker id and cwd
    for p in points:
        assert set(p["env"]["machine"]) >= {"chip", "cores", "memory_bytes", "os", "backend", "blas", "mlx", "mlx_lm"}
        assert p["env"]["machine"]["host_hash"] != os.uname().nodename
        assert str(_outputs) not in json.dumps(p["env"]["worker"])

    report = workbench("report", "spread", "--json", outputs=_outputs)
    assert report.returncode == 0, report.stderr[-3000:]
    verdict = json.loads(report.stdout.splitlines()[-1])
    assert verdict["machines"]["count"] == 1 and verdict["machines"]["workers"] == 2


def test_a_worker_killed_mid_point_loses_nothing(tmp_path, cluster, _outputs):
    cluster.add_worker("alpha")
    cluster.add_worker("beta")
    cluster.wait_for(2)
    from distributed import Client

    proc = workbench("sweep", str(write_sweep(tmp_path, "faulty", BITS)), "--scheduler", cluster.address, "--json",
                     outputs=_outputs, popen=True)  # fmt: skip
    victim = None
    with Client(cluster.address, timeout=30) as client:
        deadline = time.time() + 300
        while victim is None and time.time() < deadline:
            names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            busy = [names[a] for a, keys in client.processing().items() if keys and a in names]
            victim = busy[0] if busy else None
            time.sleep(0.5)
        time.sleep(3)  # well inside the point: its kernel is up and measuring
    assert victim is not None
    cluster.kill(victim)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.splitlines()[-1])
    assert summary["ran"] == 4 and summary["failed"] == 0
    assert summary["lost_workers"] == [victim] and f"lost worker {victim}" in err
    assert len(points_of(_outputs, "faulty")) == 4
    assert_no_duplicate_rows(_outputs, "faulty", 4)
    again = workbench("sweep", str(tmp_path / "faulty.yaml"), "--scheduler", cluster.address, "--json",
                      outputs=_outputs)  # fmt: skip
    assert again.returncode == 0 and '"skipped": 4' in again.stdout.splitlines()[-1]  # held by the client: done


def test_timed_points_never_overlap_on_the_one_timed_worker(tmp_path, cluster, _outputs):
    cluster.add_worker("timed")
    cluster.add_worker("untimed", timed=False)
    cluster.wait_for(2)
    proc = workbench("sweep", str(write_sweep(tmp_path, "alone", BITS[:2])), "--scheduler", cluster.address, "--json",
                     outputs=_outputs)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metas = sorted((p["meta"] for p in points_of(_outputs, "alone")), key=lambda m: m["started_s"])
    assert [m["worker"]["name"] for m in metas] == ["timed", "timed"]
    assert metas[0]["ended_s"] <= metas[1]["started_s"]  # recorded on the worker: one after the other
    assert [m["workers"] for m in metas] == [1, 1] and all(m["overlapped_with"] == [] for m in metas)


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path, _outputs):
    proc = workbench("sweep", str(write_sweep(tmp_path, "nowhere", BITS[:1])), "--scheduler", "tcp://127.0.0.1:9",
                     outputs=_outputs)  # fmt: skip
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "--scheduler tcp://127.0.0.1:9: no Dask scheduler answered" in line, line
    assert not _outputs.exists()


def _fake_point(root: Path, point_id: str, machine: dict, worker: str) -> None:
    """A verified point folder with a given machine fingerprint (control flow only: no number is shown)."""
    from workbench.results import integrity, store

    directory = root / point_id
    directory.mkdir(parents=True)
    data = store.parquet_bytes(pl.DataFrame({"kind": ["speed"]}))
    (directory / "results.parquet").write_bytes(data)
    integrity.write_manifest(directory, 1, data)
    (directory / "point.yaml").write_text(yaml.safe_dump({"point_id": point_id, "params": {}}))
    (directory / "env.json").write_text(json.dumps({"machine": machine, "worker": {"name": worker}}))


def test_the_report_counts_machines_and_warns_when_their_hardware_differs(_outputs):
    from workbench.present import machines

    m1 = {
        "machine_id": "aa",
        "label": "Apple M1",
        "chip": "Apple M1",
        "cores": 8,
        "memory_bytes": 16,
        "backend": "metal",
    }
    m3 = {**m1, "machine_id": "bb", "label": "Apple M3", "chip": "Apple M3"}
    root = _outputs / "sweeps" / "mixed"
    _fake_point(root, "p1", m1, "mini-1")
    _fake_point(root, "p2", {**m1, "machine_id": "cc"}, "mini-2")  # a second machine, same hardware
    same = machines.describe("mixed")
    assert (same.count, same.workers, same.warnings()) == (2, 2, [])
    _fake_point(root, "p3", m3, "studio")
    mixed = machines.describe("mixed")
    assert mixed.count == 3 and len(mixed.warnings()) == 1 and "Apple M1" in mixed.warnings()[0]
    groups = {m["machine_id"]: m["points"] for m in mixed.to_json()["machines"]}
    assert groups == {"aa": ["p1"], "cc": ["p2"], "bb": ["p3"]}


def test_returned_files_that_do_not_match_their_manifest_are_refused():
    from workbench.results import integrity, store
    from workbench.sweep import cluster

    data = store.parquet_bytes(pl.DataFrame({"kind": ["speed", "speed"]}))
    files = {"results.parquet": data, "manifest.json": json.dumps(integrity.manifest(2, data)).encode()}
    result = cluster.PointFiles("p", PointStatus.DONE, files, {"name": "w"}, 0.0, 1.0)
    assert cluster.verify(result) is None
    result.files = {**files, "results.parquet": data[:-8] + b"tampered"}
    assert "does not match its manifest" in cluster.verify(result)
    result.files = {**files, "manifest.json": json.dumps(integrity.manifest(3, data)).encode()}
    assert "the manifest says 3" in cluster.verify(result)
    result.files = {"results.parquet": data}
    assert cluster.verify(result) == "no manifest.json came back"


def test_overlap_is_counted_only_on_the_same_machine():
    from workbench.sweep import cluster, dask_executor

    def point(pid, host, start, end):
        return cluster.PointFiles(pid, PointStatus.DONE, {}, {"name": pid}, start, end, machine={"host_hash": host})

    timings = {}
    assert dask_executor.overlaps(timings, point("a", "h1", 0, 10)) == []
    assert dask_executor.overlaps(timings, point("b", "h2", 5, 15)) == []  # another machine: not shared
    assert dask_executor.overlaps(timings, point("c", "h1", 9, 12)) == ["a"]
    assert dask_executor.overlaps(timings, point("d", "h1", 12, 13)) == []  # after both: alone
