"""A sweep point on a Dask worker that shares nothing with the client but the network.

A lab's machines have no common disk: a worker runs the point in a scratch folder of its own, from
the notebook template's *content* (it travels with the task), and returns the point's files as bytes.
The client verifies them (row count and SHA-256 against the manifest, as `integrity` does) and writes
them atomically into its own `outputs/sweeps/<sweep>/<point_id>/`: a point is finished only once the
client holds it. No path made on the client is used on a worker; a model given as a local directory
must exist on each worker, which `check_worker` says before the sweep starts.

    dask scheduler                                         # one machine
    dask worker tcp://HOST:8786 --nworkers 1 --nthreads 1 --resources timed=1   # each measuring machine
    workbench sweep params/smoke.yaml --scheduler tcp://HOST:8786
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.paths import atomic_dir, atomic_write_text
from workbench.results import integrity
from workbench.sweep.execute import NotebookPolicy, run_notebook
from workbench.sweep.outcome import PointStatus
from workbench.sweep.rerun import REPLACED

RETURNED = ("params.yaml", "env.json", integrity.RESULTS, integrity.MANIFEST, "executed.ipynb")
TIMED = "timed"  # the Dask resource a measuring machine offers once: `dask worker --resources timed=1`


@dataclass(frozen=True)
class PointTask:
    """What travels to a worker: the point, how to run it, and the notebook template itself (its JSON text)."""

    sweep: str
    experiment: str
    point_id: str
    params: dict[str, Any]
    notebook: str
    timeout_s: int
    retries: int


@dataclass
class PointFiles:
    """What comes back: the point's files as bytes, who ran it, and when (the worker's clock, epoch seconds)."""

    point_id: str
    status: PointStatus  # DONE or FAILED
    files: dict[str, bytes]
    worker: dict[str, Any]
    started_s: float
    ended_s: float
    error: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)


def worker_identity() -> dict[str, Any]:
    """The Dask worker running this task (name, id, address), its working directory and process id."""
    from distributed import get_worker

    try:
        worker = get_worker()
        known: dict[str, str | None] = {"name": str(worker.name), "id": worker.id, "address": worker.address}
    except ValueError:  # not inside a worker (called directly): still say where it ran
        known = {"name": "local", "id": None, "address": None}
    return {**known, "cwd": os.getcwd(), "pid": os.getpid()}


def run_point(task: PointTask) -> PointFiles:
    """On the worker: execute the point in scratch space, read its files back, delete the scratch folder."""
    worker = worker_identity()
    scratch = Path(tempfile.mkdtemp(prefix=f"workbench-point-{task.point_id}-"))
    try:
        template, out = scratch / "template.ipynb", scratch / "point"
        template.write_text(task.notebook)
        out.mkdir()
        parameters = {
            "experiment": task.experiment,
            "params_file": None,
            "params": task.params,
            "output_dir": str(out),
            "show_chart": False,
        }
        started = time.time()
        policy = NotebookPolicy(task.timeout_s, task.retries, cwd=scratch)
        error = run_notebook(template, out / "executed.ipynb", parameters, policy=policy)
        ended = time.time()
        machine = {}
        if (out / "env.json").is_file():
            env = json.loads((out / "env.json").read_text())
            machine = env.get("machine", {})
            env["worker"] = worker  # which worker process measured it, beside which machine
            (out / "env.json").write_text(json.dumps(env, indent=2, sort_keys=True, default=str))
        problem = integrity.point_problem(out)
        if error is None and problem is not None:
            error = f"the notebook finished but the point is not: {problem}"
        files = {name: (out / name).read_bytes() for name in RETURNED if (out / name).is_file()}
        status = PointStatus.DONE if error is None else PointStatus.FAILED
        return PointFiles(task.point_id, status, files, worker, started, ended, error, machine)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_worker(model_dirs: list[str]) -> list[str]:
    """On each worker before a sweep: what it lacks to run the sweep's points (model folders, the kernel)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from workbench.jupyter_kernel import KERNEL_NAME

    problems = [f"model directory {p} is missing" for p in model_dirs if not (Path(p) / "config.json").is_file()]
    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        problems.append(f"Jupyter kernel {KERNEL_NAME!r} is not installed (run `workbench install-kernel`)")
    return problems


def verify(result: PointFiles) -> str | None:
    """Why the returned files are not a finished point (None when the parquet matches its manifest and reads back
    with the manifest's row count)."""
    import polars as pl

    files = result.files
    for name in (integrity.RESULTS, integrity.MANIFEST):
        if name not in files:
            return f"no {name} came back"
    try:
        recorded = json.loads(files[integrity.MANIFEST])
    except ValueError:
        return f"unreadable {integrity.MANIFEST}"
    data = files[integrity.RESULTS]
    if not isinstance(recorded, dict) or integrity.manifest(recorded.get("rows", -1), data) != recorded:
        return f"{integrity.RESULTS} does not match its manifest (size or checksum)"
    try:
        rows = pl.read_parquet(io.BytesIO(data)).height
    except Exception:  # polars raises several types for a corrupt file
        return f"{integrity.RESULTS} does not read back"
    return None if rows == recorded["rows"] else f"{rows} rows, the manifest says {recorded['rows']}"


def point_meta(
    sweep: str, experiment: str, task_params: dict[str, Any], result: PointFiles, *, overlapped: list[str]
) -> dict[str, Any]:
    """point.yaml of a point measured on a worker: who ran it, when, and which points overlapped it on its
    machine (`workers` counts them with it: 1 means it ran alone)."""
    return {
        "sweep": sweep,
        "point_id": result.point_id,
        "experiment": experiment,
        "params": task_params,
        "workers": 1 + len(overlapped),
        "overlapped_with": sorted(overlapped),
        "worker": result.worker,
        "machine_id": result.machine.get("machine_id"),
        "host_hash": result.machine.get("host_hash"),
        "started_s": round(result.started_s, 3),
        "ended_s": round(result.ended_s, 3),
    }


def write_point(directory: Path, result: PointFiles, meta: dict[str, Any]) -> None:
    """Write a verified point's files into the client's folder in one rename, point.yaml with them."""
    import yaml

    with atomic_dir(directory) as tmp:
        for name, data in result.files.items():
            (tmp / name).write_bytes(data)
        (tmp / "point.yaml").write_text(yaml.safe_dump(meta, sort_keys=True))
        keep_replaced(directory, tmp)
        tmp.chmod(0o755)


def keep_replaced(directory: Path, tmp: Path) -> None:
    """Results `--rerun` set aside (`<point>/.replaced/`) go along into the folder that replaces the point's, so a
    re-measurement on a worker never loses the earlier one. Hard links (a copy where links fail): until the rename,
    the old folder still holds them."""
    kept = directory / REPLACED
    if kept.is_dir() and not kept.is_symlink():
        shutil.copytree(kept, tmp / REPLACED, symlinks=True, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_failure(directory: Path, meta: dict[str, Any], error: str, *, executed: bytes | None = None) -> None:
    """A failed point on the client: its point.yaml, error.json and the executed notebook, if one came back."""
    import yaml

    notebook = str(directory / "executed.ipynb") if executed is not None else None
    record = {"error": error, "executed_notebook": notebook, "worker": meta.get("worker"), "params": meta["params"]}
    with atomic_dir(directory) as tmp:
        if executed is not None:
            (tmp / "executed.ipynb").write_bytes(executed)
        (tmp / "point.yaml").write_text(yaml.safe_dump(meta, sort_keys=True))
        (tmp / "error.json").write_text(json.dumps(record, indent=2, default=str))
        keep_replaced(directory, tmp)
        tmp.chmod(0o755)


def add_overlap(directory: Path, other: str) -> None:
    """Record in an earlier point's point.yaml that `other` ran on its machine while it did."""
    import yaml

    meta = integrity.read_point_meta(directory)
    if meta is None or other in meta.get("overlapped_with", []):
        return
    meta["overlapped_with"] = sorted([*meta.get("overlapped_with", []), other])
    meta["workers"] = 1 + len(meta["overlapped_with"])
    atomic_write_text(directory / "point.yaml", yaml.safe_dump(meta, sort_keys=True))
