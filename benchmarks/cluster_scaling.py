"""Wall time of an 8-point nano sweep on a real Dask cluster of 1 worker against 2, and what the client spends
per point taking it back (fetching the files, verifying them against the manifest, writing them).

A `dask scheduler` and the workers are started as separate processes on this machine, each worker with its
own working directory, `WORKBENCH_OUTPUTS` and model cache, one thread and `--resources timed=1` (as on a
real cluster, one per machine). The client runs `workbench sweep --scheduler ... --json` and reads the
per-point client cost from its summary. With 2 workers on 2 cores the two points at once share the machine,
so the sweep's speed-up is bounded by the cores and by the client and scheduler's own CPU; the points'
numbers would be flagged (`workers` 2 in point.yaml). The load average is printed with every figure.

    .venv/bin/python benchmarks/cluster_scaling.py [--points 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
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


def spawn(command: list[str], log: Path, *, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def start_cluster(home: Path, workers: int, cache: Path) -> tuple[str, list[subprocess.Popen]]:
    file = home / "scheduler.json"
    command = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file"]
    procs = [spawn([*command, str(file)], home / "scheduler.log", cwd=home)]
    while not file.is_file():
        time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    for i in range(workers):
        own = home / f"worker-{i}"
        (own / "outputs").mkdir(parents=True)
        shutil.copytree(cache, own / "cache")
        env = {**os.environ, "WORKBENCH_OUTPUTS": str(own / "outputs"), "WORKBENCH_CACHE": str(own / "cache")}
        env["JUPYTER_PATH"] = install_own_kernel(own)
        worker = [DASK, "worker", address, "--name", f"w{i}", "--nworkers", "1", "--nthreads", "1"]
        worker += ["--no-dashboard", "--resources", "timed=1", "--local-directory", str(own / "dask")]
        procs.append(spawn(worker, own / "worker.log", cwd=own, env=env))
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def install_own_kernel(home: Path) -> str:
    """Each worker's own `workbench` kernel spec (as each machine installs one), first on its JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    from workbench.jupyter_kernel import KERNEL_NAME, kernel_env

    install(kernel_name=KERNEL_NAME, display_name="Workbench (MLX)", prefix=str(home / "kernel"), env=kernel_env())
    return str(home / "kernel" / "share" / "jupyter")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def sweep_file(home: Path, name: str, points: int) -> Path:
    bits = [8, 6, 4, 3, 2]
    variants = [[{"bits": bits[i % len(bits)]}] for i in range(points)]
    listed = [{"variants": v, "seed": i} for i, v in enumerate(variants)]
    spec = {"name": name, "experiment": "quantise", "fixed": TINY, "points": listed, "timeout_s": 600, "retries": 1}
    path = home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(workers: int, points: int, cache: Path) -> dict:
    """One sweep of `points` on a fresh cluster of `workers`: wall time, client cost, load before and after."""
    home = Path(tempfile.mkdtemp(prefix=f"cluster-scaling-{workers}w-"))
    address, procs = start_cluster(home, workers, cache)
    try:
        env = {**os.environ, "WORKBENCH_OUTPUTS": str(home / "client-outputs"), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "workbench.cli", "sweep", str(sweep_file(home, f"scale{workers}", points))]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run([*command, "--scheduler", address, "--json"], capture_output=True, text=True, env=env)
        wall_s = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"sweep on {workers} workers failed: {proc.stderr[-2000:]}")
        cost = json.loads(proc.stdout.splitlines()[-1])["client_cost"]
        load_after = os.getloadavg()[0]
        return {"workers": workers, "wall_s": wall_s, "load_before": load_before, "load_after": load_after, **cost}
    finally:
        stop(procs)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    from workbench.models import build
    from workbench.paths import cache_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    args = parser.parse_args()
    build.build_model("nano", progress=False)
    one = run(1, args.points, cache_dir())
    two = run(2, args.points, cache_dir())
    done = one["points"] + two["points"]
    per_point = {k: (one[k] + two[k]) / max(done, 1) for k in ("fetch_s", "verify_s", "write_s", "bytes")}
    for result in (one, two):
        print(
            f"{args.points}-point nano sweep on {result['workers']} worker(s): {result['wall_s']:.1f} s "
            f"(load {result['load_before']:.1f} -> {result['load_after']:.1f}, {os.cpu_count()} cores)"
        )
    print(f"speed-up 1 -> 2 workers: {one['wall_s'] / two['wall_s']:.2f}x")
    ms = {k: per_point[k] * 1e3 for k in ("fetch_s", "verify_s", "write_s")}
    print(
        f"client cost per point: fetch {ms['fetch_s']:.1f} ms, verify {ms['verify_s']:.1f} ms, "
        f"write {ms['write_s']:.1f} ms ({per_point['bytes'] / 1024:.0f} KiB a point)"
    )
    print(json.dumps({"one": one, "two": two, "ratio": one["wall_s"] / two["wall_s"], "client_per_point": per_point}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
