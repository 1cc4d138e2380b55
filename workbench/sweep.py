"""Sweeps: a params file expands into points; each point is one papermill-executed notebook.

A sweep file names an experiment (or a notebook), `fixed` parameters, and either a `grid`
(cartesian product of lists) or explicit `points`. The whole file is validated before
anything runs. A point's id is a stable hash of its parameters, so running the same
sweep again resumes: a point is finished exactly when its `results.parquet` exists (the
notebook writes it last, atomically); missing or failed points run again.

    outputs/sweeps/<sweep>/<point_id>/{point.yaml, params.yaml, env.json, results.parquet, executed.ipynb}

    workbench sweep params/smoke.yaml [--workers N] [--executor local|dask] [--scheduler ADDR]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.paths import REPO_ROOT, atomic_write_text, outputs_dir

NOTEBOOKS = {
    "quantise": "notebooks/10_quantisation.ipynb",
    "distill": "notebooks/20_distillation.ipynb",
    "batching": "notebooks/30_batching.ipynb",
    "speculative": "notebooks/40_speculative.ipynb",
    "prompt_cache": "notebooks/50_caching.ipynb",
    "serving": "notebooks/60_serving.ipynb",
    "tradeoff": "notebooks/70_tradeoff.ipynb",
}
SWEEP_KEYS = {"name", "description", "experiment", "notebook", "fixed", "grid", "points", "timeout_s", "retries"}


class SweepError(ValueError):
    """A sweep file that cannot run; the message is `file:key: problem`."""


@dataclass(frozen=True)
class Point:
    point_id: str
    params: dict


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    experiment: str
    notebook: Path
    points: tuple
    timeout_s: int = 1800
    retries: int = 2
    fixed: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return outputs_dir() / "sweeps" / self.name


def point_id(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def expand(fixed: dict, grid: dict | None, points: list | None) -> list[dict]:
    """The points of a sweep: fixed parameters merged with each grid combination or listed point."""
    if grid:
        keys = sorted(grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    else:
        combos = list(points or [{}])
    return [{**fixed, **combo} for combo in combos]


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file completely; raises SweepError naming `file:key`."""
    from workbench import experiments, models
    from workbench.experiments.base import is_generated
    from workbench.paths import read_yaml_mapping

    path = Path(path)
    spec = read_yaml_mapping(path, SweepError)
    unknown = sorted(set(spec) - SWEEP_KEYS)
    if unknown:
        raise SweepError(f"{path}:{unknown[0]}: unknown key (known: {', '.join(sorted(SWEEP_KEYS))})")
    experiment = spec.get("experiment")
    if experiment not in experiments.NAMES:
        raise SweepError(f"{path}:experiment: must be one of {', '.join(experiments.NAMES)}, got {experiment!r}")
    notebook = REPO_ROOT / spec.get("notebook", NOTEBOOKS[experiment])
    if not notebook.is_file():
        raise SweepError(f"{path}:notebook: {notebook} does not exist")
    fixed, grid, listed = spec.get("fixed") or {}, spec.get("grid"), spec.get("points")
    if not isinstance(fixed, dict):
        raise SweepError(f"{path}:fixed: expected a mapping")
    if grid is not None and listed is not None:
        raise SweepError(f"{path}:grid: give either grid or points, not both")
    if grid is not None and (not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values())):
        raise SweepError(f"{path}:grid: expected a mapping of non-empty lists")
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed)):
        raise SweepError(f"{path}:points: expected a list of mappings")
    for key in ("timeout_s", "retries"):
        value = spec.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "timeout_s" else 0):
            raise SweepError(f"{path}:{key}: expected an integer >= {1 if key == 'timeout_s' else 0}, got {value!r}")
    config_cls, _ = experiments.get(experiment)
    points = []
    for params in expand(fixed, grid, listed):
        try:
            config = config_cls.from_dict(params)
            for spec_name in config.model_specs():
                if not is_generated(spec_name):
                    models.resolve(spec_name, build_missing=False)
        except ValueError as exc:
            message = str(exc)
            key, _, problem = message.partition(": ")
            key = key.split(".", 1)[1] if key.startswith(f"{experiment}.") else "model"
            raise SweepError(f"{path}:{key}: {problem or message}") from None
        points.append(Point(point_id(params), params))
    return Sweep(
        name=spec.get("name", path.stem),
        path=path,
        experiment=experiment,
        notebook=notebook,
        points=tuple(points),
        timeout_s=spec.get("timeout_s", 1800),
        retries=spec.get("retries", 2),
        fixed=fixed,
    )


def point_dir(sweep: Sweep, point: Point) -> Path:
    return sweep.root / point.point_id


def is_finished(directory: Path) -> bool:
    return (directory / "results.parquet").is_file()


def prepare_point(sweep: Sweep, point: Point) -> Path:
    """Write the parameterised notebook (papermill's injection, not executed) and point.yaml (sweep, id,
    parameters); the notebook itself writes params.yaml (the full config), env.json and results.parquet."""
    import papermill
    import yaml

    directory = point_dir(sweep, point)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        directory / "point.yaml",
        yaml.safe_dump(
            {"sweep": sweep.name, "point_id": point.point_id, "experiment": sweep.experiment, "params": point.params}
        ),
    )
    papermill.execute_notebook(
        str(sweep.notebook),
        str(directory / "prepared.ipynb"),
        parameters=notebook_parameters(sweep, point, directory),
        prepare_only=True,
        kernel_name="workbench",
        progress_bar=False,
    )
    return directory


def notebook_parameters(sweep: Sweep, point: Point, directory: Path) -> dict:
    return {
        "params_file": str(REPO_ROOT / "params" / f"{sweep.experiment}.yaml"),
        "params": point.params,
        "output_dir": str(directory),
    }


def execute_point(sweep: Sweep, point: Point, *, timeout_s: int | None = None, retries: int | None = None) -> dict:
    """Run one point with papermill; retry failures that may pass on retry (kernel start), with backoff."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from workbench.kernel import KERNEL_NAME

    directory = point_dir(sweep, point)
    if is_finished(directory):
        return {"point_id": point.point_id, "status": "skipped"}
    for stale in ("results.parquet.tmp", "error.json"):
        (directory / stale).unlink(missing_ok=True)
    prepare_point(sweep, point)
    executed = directory / "executed.ipynb"
    retries = sweep.retries if retries is None else retries
    error = None
    for attempt in range(retries + 1):
        try:
            papermill.execute_notebook(
                str(sweep.notebook),
                str(executed),
                parameters=notebook_parameters(sweep, point, directory),
                kernel_name=KERNEL_NAME,
                cwd=str(REPO_ROOT),
                progress_bar=False,
                execution_timeout=timeout_s or sweep.timeout_s,
            )
            error = None
            break
        except PapermillExecutionError as exc:  # a cell raised: deterministic, no retry
            error = f"{exc.ename}: {exc.evalue}".splitlines()[0]
            break
        except Exception as exc:  # kernel start/death, timeout: may pass on retry
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if attempt < retries:
                time.sleep(min(2**attempt, 30))
    if error is None and is_finished(directory):
        return {"point_id": point.point_id, "status": "done"}
    error = error or "notebook finished without writing results.parquet"
    atomic_write_text(
        directory / "error.json",
        json.dumps({"error": error, "executed_notebook": str(executed), "params": point.params}, indent=2, default=str),
    )
    return {"point_id": point.point_id, "status": "failed", "error": error, "executed_notebook": str(executed)}


def clean_unfinished(sweep: Sweep) -> None:
    """Remove what a killed run left in unfinished point folders (never a finished point's files)."""
    for point in sweep.points:
        directory = point_dir(sweep, point)
        if directory.exists() and not is_finished(directory):
            shutil.rmtree(directory)


def run_sweep(
    sweep: Sweep,
    *,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Execute every unfinished point; returns one status dict per point."""
    from tqdm import tqdm

    clean_unfinished(sweep)
    todo = [p for p in sweep.points if not is_finished(point_dir(sweep, p))]
    outcomes = [{"point_id": p.point_id, "status": "skipped"} for p in sweep.points if p not in todo]
    bar = tqdm(
        total=len(sweep.points), initial=len(outcomes), desc=f"sweep {sweep.name}", disable=not progress, unit="point"
    )
    failed = 0

    def record(outcome):
        nonlocal failed
        outcomes.append(outcome)
        failed += outcome["status"] == "failed"
        bar.update(1)
        bar.set_postfix(
            done=sum(o["status"] != "failed" for o in outcomes),
            failed=failed,
            remaining=len(sweep.points) - len(outcomes),
        )

    if executor == "dask":
        from distributed import Client, LocalCluster, as_completed

        cluster = (
            None
            if scheduler
            else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        with Client(scheduler or cluster) as client:
            futures = [
                client.submit(execute_point, sweep, p, timeout_s=timeout_s, retries=retries, pure=False) for p in todo
            ]
            for future in as_completed(futures):
                record(future.result())
        if cluster is not None:
            cluster.close()
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        # each point runs in its own kernel process; threads only wait on them
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(execute_point, sweep, p, timeout_s=timeout_s, retries=retries) for p in todo]
            for future in as_completed(futures):
                record(future.result())
    bar.close()
    return outcomes


def default_workers() -> int:
    import os

    from workbench import runtime

    return 1 if runtime.backend() in ("metal", "cuda", "gpu") else max(1, os.cpu_count() or 1)


def load_sweep_results(name: str):
    """One LazyFrame across a sweep's finished points, with the point parameters as `param_*` columns."""
    import polars as pl
    import yaml

    root = outputs_dir() / "sweeps" / name
    frames = []
    for parquet in sorted(root.glob("*/results.parquet")):
        meta = yaml.safe_load((parquet.parent / "point.yaml").read_text())
        columns = {
            f"param_{k}": (v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))
            for k, v in meta["params"].items()
        }
        frames.append(
            pl.scan_parquet(parquet).with_columns(
                pl.lit(meta["point_id"]).alias("point_id"),
                pl.lit(name).alias("sweep"),
                *[pl.lit(v).alias(k) for k, v in columns.items()],
            )
        )
    if not frames:
        raise FileNotFoundError(f"sweep {name!r} has no finished points under {root}")
    return pl.concat(frames, how="diagonal_relaxed")


def list_sweeps() -> list[dict]:
    root = outputs_dir() / "sweeps"
    out = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir()):
        points = [p for p in directory.iterdir() if p.is_dir()]
        out.append(
            {
                "sweep": directory.name,
                "done": sum(is_finished(p) for p in points),
                "failed": sum((p / "error.json").exists() and not is_finished(p) for p in points),
            }
        )
    return out
