"""Sweeps: a sweep file expands into points; each point is one papermill-executed notebook.

A sweep file names an experiment, `fixed` parameters, and either a `grid` (cartesian
product of lists) or explicit `points`. Each point's config is the experiment's defaults
< `fixed` < the point, built by `experiments.build_config`, the same function the
notebook calls, so what is validated is exactly what runs. The whole file is validated
before anything runs. A point's id is a stable hash of its parameters, so running the
same sweep again resumes: a point is finished exactly when its `results.parquet` exists
and reads back (the notebook writes it last, atomically); missing or failed points run
again.

Timed points run one at a time by default: two points measured at once share the cores
and the memory bandwidth, and their numbers mean nothing. `--workers N` above 1 is
allowed, recorded in every point's `point.yaml`, and flagged in the report.

    outputs/sweeps/<sweep>/<point_id>/{point.yaml, params.yaml, env.json, results.parquet, executed.ipynb}

    workbench sweep params/smoke.yaml [--workers N] [--executor local|dask] [--scheduler ADDR]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench import tool
from workbench.errors import SweepError, WorkbenchError
from workbench.paths import REPO_ROOT, atomic_write_text, outputs_dir
from workbench.results import is_finished, list_sweeps

NOTEBOOK = REPO_ROOT / "notebooks" / "10_experiment.ipynb"
MAX_POINTS = 10_000


class SweepFile(BaseModel):
    """The keys a sweep file may have."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    experiment: str
    fixed: dict = Field(default_factory=dict)
    grid: dict[str, list] | None = None
    points: list[dict] | None = Field(None, min_length=1, max_length=MAX_POINTS)
    timeout_s: int = Field(1800, ge=1, le=7 * 86400)
    retries: int = Field(2, ge=0, le=10)


@dataclass(frozen=True)
class Point:
    point_id: str
    params: dict


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    experiment: str
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


def _parse(path: Path) -> SweepFile:
    from workbench import experiments
    from workbench.paths import read_yaml_mapping

    raw = read_yaml_mapping(path, SweepError)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "file"
        raise SweepError(f"{path}:{key}: {error['msg']}") from None
    if spec.experiment not in experiments.names():
        raise SweepError(f"{path}:experiment: must be one of {', '.join(experiments.names())}, got {spec.experiment!r}")
    if spec.grid is not None and spec.points is not None:
        raise SweepError(f"{path}:grid: give either grid or points, not both")
    if spec.grid is not None:
        if not spec.grid or not all(spec.grid.values()):
            raise SweepError(f"{path}:grid: expected a mapping of non-empty lists")
        if math.prod(len(v) for v in spec.grid.values()) > MAX_POINTS:
            raise SweepError(f"{path}:grid: more than {MAX_POINTS} points; split the sweep")
    return spec


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file completely: every point's config and models; raises SweepError `file:key`."""
    from workbench import experiments

    path = Path(path)
    spec = _parse(path)
    points = []
    for params in expand(spec.fixed, spec.grid, spec.points):
        try:
            config = experiments.build_config(spec.experiment, None, params)
            experiments.check_models(config)
        except WorkbenchError as exc:
            key, _, problem = str(exc).partition(": ")
            key = key.split(".", 1)[1] if key.startswith(f"{spec.experiment}.") else "model"
            raise SweepError(f"{path}:{key}: {problem or exc}") from None
        points.append(Point(point_id(params), params))
    return Sweep(
        name=spec.name or path.stem,
        path=path,
        experiment=spec.experiment,
        points=tuple(points),
        timeout_s=spec.timeout_s,
        retries=spec.retries,
        fixed=spec.fixed,
    )


def point_dir(sweep: Sweep, point: Point) -> Path:
    return sweep.root / point.point_id


def notebook_parameters(sweep: Sweep, point: Point, directory: Path) -> dict:
    return {
        "experiment": sweep.experiment,
        "params_file": None,
        "params": point.params,
        "output_dir": str(directory),
        "show_chart": False,
    }


def write_point_meta(sweep: Sweep, point: Point, *, workers: int = 1) -> Path:
    """point.yaml: sweep, id, parameters, and how many timed points ran at once (`workers`)."""
    import yaml

    directory = point_dir(sweep, point)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"sweep": sweep.name, "point_id": point.point_id, "experiment": sweep.experiment}
    atomic_write_text(directory / "point.yaml", yaml.safe_dump({**meta, "params": point.params, "workers": workers}))
    return directory


def prepare_point(sweep: Sweep, point: Point, *, workers: int = 1) -> Path:
    """point.yaml and the parameterised notebook, not executed (`--prepare-only`)."""
    import papermill

    directory = write_point_meta(sweep, point, workers=workers)
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(directory / "prepared.ipynb"),
        parameters=notebook_parameters(sweep, point, directory),
        prepare_only=True,
        kernel_name="workbench",
        progress_bar=False,
    )
    return directory


def execute_point(
    sweep: Sweep, point: Point, *, timeout_s: int | None = None, retries: int | None = None, parallel: int = 1
) -> dict:
    """Run one point with papermill; retry failures that may pass on retry (kernel start), with backoff."""
    import papermill
    import tenacity
    from papermill.exceptions import PapermillExecutionError

    from workbench.jupyter_kernel import KERNEL_NAME

    directory = point_dir(sweep, point)
    if is_finished(directory):
        return {"point_id": point.point_id, "status": "skipped"}
    for stale in ("results.parquet", "error.json"):
        (directory / stale).unlink(missing_ok=True)
    write_point_meta(sweep, point, workers=parallel)
    executed = directory / "executed.ipynb"
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_not_exception_type(PapermillExecutionError),  # a cell raised: deterministic
        stop=tenacity.stop_after_attempt((sweep.retries if retries is None else retries) + 1),
        wait=tenacity.wait_exponential(multiplier=1, max=30),
        reraise=True,
    )
    error = None
    try:
        retrying(
            papermill.execute_notebook,
            str(NOTEBOOK),
            str(executed),
            parameters=notebook_parameters(sweep, point, directory),
            kernel_name=KERNEL_NAME,
            cwd=str(REPO_ROOT),
            progress_bar=False,
            request_save_on_cell_execute=False,  # one write at the end, not one per cell
            execution_timeout=timeout_s or sweep.timeout_s,
        )
    except PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}".splitlines()[0]
    except Exception as exc:  # kernel start/death, timeout, after the retries
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if error is None and is_finished(directory):
        return {"point_id": point.point_id, "status": "done"}
    error = error or "notebook finished without writing results.parquet"
    record = {"error": error, "executed_notebook": str(executed), "params": point.params}
    atomic_write_text(directory / "error.json", json.dumps(record, indent=2, default=str))
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
    """Execute every unfinished point, `workers` at a time (1: timed points never overlap)."""
    from tqdm import tqdm

    clean_unfinished(sweep)
    todo = [p for p in sweep.points if not is_finished(point_dir(sweep, p))]
    outcomes = [{"point_id": p.point_id, "status": "skipped"} for p in sweep.points if p not in todo]
    bar = tqdm(
        total=len(sweep.points), initial=len(outcomes), desc=f"sweep {sweep.name}", disable=not progress, unit="point"
    )
    kwargs = {"timeout_s": timeout_s, "retries": retries, "parallel": workers}

    def record(outcome):
        outcomes.append(outcome)
        bar.update(1)
        failed = sum(o["status"] == "failed" for o in outcomes)
        bar.set_postfix(done=len(outcomes) - failed, failed=failed, remaining=len(sweep.points) - len(outcomes))

    if executor == "dask":
        from distributed import Client, LocalCluster, as_completed

        cluster = (
            None
            if scheduler
            else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        with Client(scheduler or cluster) as client:
            # what may overlap is the cluster's worker count, whatever --workers said
            kwargs["parallel"] = max(len(client.scheduler_info().get("workers", {})), 1)
            futures = [client.submit(execute_point, sweep, p, pure=False, **kwargs) for p in todo]
            for future in as_completed(futures):
                record(future.result())
        if cluster is not None:
            cluster.close()
    elif workers == 1:
        for point in todo:
            record(execute_point(sweep, point, **kwargs))
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=workers) as pool:  # each point runs in its own kernel process
            for future in as_completed([pool.submit(execute_point, sweep, p, **kwargs) for p in todo]):
                record(future.result())
    bar.close()
    return outcomes


def setup_arg_parser() -> tool.Parser:
    parser = tool.parser("sweep", "expand a sweep file and execute its points with papermill (resumable)")
    parser.add_argument("params", help="params/<sweep>.yaml")
    parser.add_argument(
        "--workers",
        type=tool.int_at_least(1, 64),
        default=1,
        help="points at once (default 1: timed points never overlap; more is recorded and flagged)",
    )
    parser.add_argument("--executor", choices=("local", "dask"), default="local")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler")
    parser.add_argument("--timeout", type=tool.positive_int, help="seconds per notebook cell")
    parser.add_argument("--retries", type=tool.int_at_least(0, 10))
    parser.add_argument("--prepare-only", action="store_true", help="write parameterised notebooks, run nothing")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    plan = load_sweep(args.params)
    summary = {"sweep": plan.name, "points": len(plan.points), "root": str(plan.root), "workers": args.workers}
    if args.prepare_only:
        for point in plan.points:
            print(prepare_point(plan, point, workers=args.workers) / "prepared.ipynb")
        summary["prepared"] = len(plan.points)
        tool.print_json(summary) if args.json else tool.print_table(summary)
        return 0
    if args.workers > 1:
        print(
            f"warning: {args.workers} timed points will run at once and share this machine; "
            "their speed numbers are flagged in the report",
            file=sys.stderr,
        )
    outcomes = run_sweep(
        plan,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        timeout_s=args.timeout,
        retries=args.retries,
    )
    failed = [o for o in outcomes if o["status"] == "failed"]
    summary.update(
        ran=sum(o["status"] == "done" for o in outcomes),
        skipped=sum(o["status"] == "skipped" for o in outcomes),
        failed=len(failed),
    )
    if args.json:
        tool.print_json({**summary, "failures": failed})
    else:
        tool.print_table(summary)
        for o in failed:
            print(f"failed {o['point_id']}: {o['error']} (see {o['executed_notebook']})")
    return 1 if failed else 0


def list_main(argv: list[str] | None = None) -> int:
    tool.parser("sweeps", "list sweeps with their done/failed point counts").parse_args(argv)
    for row in list_sweeps():
        print(f"{row['sweep']:<30} done {row['done']:>4}  failed {row['failed']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(tool.entry(main))
