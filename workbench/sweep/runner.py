"""Sweeps: a sweep file expands into points; each point is one papermill-executed notebook.

The sweep file, its points and their validation live in `sweep_file`; this module runs them.
Running the same sweep again resumes: a point is finished when its `results.parquet` matches
the `manifest.json` written after it (`integrity`); missing, failed and corrupt points run
again, corrupt ones named. One run per sweep folder at a time, and Ctrl-C stops cleanly
(`sweep_guard`); `sweep.json` records the sweep file's hash and points, so points no longer in
the file are reported as stale. The outputs folder is probed before anything is measured.

Timed points run one at a time by default: two points measured at once share the cores
and the memory bandwidth, and their numbers mean nothing. `--workers N` above 1 is
allowed, recorded in every point's `point.yaml`, and flagged in the report.

    outputs/sweeps/<sweep>/<point_id>/{point.yaml, params.yaml, env.json, results.parquet, manifest.json,
                                       executed.ipynb}

    workbench sweep params/smoke.yaml [--workers N] [--executor local|dask] [--scheduler ADDR] [--max-points N]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from workbench import console
from workbench.paths import atomic_write_text, check_writable
from workbench.results import integrity
from workbench.results.integrity import point_problem
from workbench.results.store import is_finished
from workbench.sweep import dask_executor
from workbench.sweep.execute import NOTEBOOK, run_notebook
from workbench.sweep.guard import Interrupts, hold
from workbench.sweep.options import ExecutionOptions
from workbench.sweep.outcome import PointOutcome, PointStatus, count
from workbench.sweep.rerun import REPLACED, rerun_ids, set_aside
from workbench.sweep.spec import MAX_POINTS, Point, Sweep, expand, load_sweep, point_id  # noqa: F401 (the API)

POINT_BYTES = 4 << 20  # rough disk use of one point: executed notebook, rows, metadata
EXIT_INTERRUPTED = 130


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
    if point.label:
        meta["label"] = point.label
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
    sweep: Sweep, point: Point, *, options: ExecutionOptions | None = None, interrupts: Interrupts | None = None
) -> PointOutcome:
    """Run one point with papermill (`run_notebook`); a finished one is skipped unless `options.rerun` names it. A
    point stopped by Ctrl-C (`interrupts`) is `interrupted`, not failed, and not retried: a resume runs it again."""
    options = options or ExecutionOptions()
    directory = point_dir(sweep, point)
    rerun = point.point_id in options.rerun
    if is_finished(directory) and not rerun:
        return PointOutcome(point.point_id, PointStatus.SKIPPED)
    if rerun and is_finished(directory):
        set_aside(directory)
    for stale in ("results.parquet", "error.json"):
        (directory / stale).unlink(missing_ok=True)
    write_point_meta(sweep, point, workers=options.workers)
    executed = directory / "executed.ipynb"
    policy = options.policy(sweep, interrupts=interrupts)
    error = run_notebook(NOTEBOOK, executed, notebook_parameters(sweep, point, directory), policy=policy)
    if error is None and is_finished(directory):
        return PointOutcome(point.point_id, PointStatus.DONE)
    if interrupts and (interrupts.aborted or (interrupts.stopping and "KeyboardInterrupt" in (error or ""))):
        return PointOutcome(point.point_id, PointStatus.INTERRUPTED)
    error = error or "notebook finished without writing results.parquet"
    record = {"error": error, "executed_notebook": str(executed), "params": point.params}
    try:
        atomic_write_text(directory / "error.json", json.dumps(record, indent=2, default=str))
    except OSError as exc:  # a full disk must not end the sweep with a traceback; the summary still names it
        error = f"{error} (error.json not written: {exc.strerror or exc})"
    return PointOutcome(point.point_id, PointStatus.FAILED, error=error, executed_notebook=str(executed))


def clean_unfinished(sweep: Sweep) -> list[Path]:
    """Remove what a killed run left in unfinished point folders (never a finished point's files). A point folder
    that is a symlink (or not a folder) is never followed or removed: it is skipped, said on stderr, and returned."""
    skipped = []
    for point in sweep.points:
        directory = point_dir(sweep, point)
        if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
            kind = f"a symlink to {os.readlink(directory)}" if directory.is_symlink() else "not a folder"
            print(f"warning: skipped point folder {directory}: {kind}; not removed or followed", file=sys.stderr)
            skipped.append(directory)
        elif directory.exists() and not is_finished(directory):
            for entry in directory.iterdir():  # results set aside by `--rerun` stay; links are removed, not followed
                if entry.name != REPLACED:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            if not any(directory.iterdir()):
                directory.rmdir()
    return skipped


def run_sweep(sweep: Sweep, options: ExecutionOptions | None = None) -> list[PointOutcome]:
    """Execute every unfinished point as `options` say (`ExecutionOptions`: local `workers` at a time, or on a Dask
    cluster), and the finished ones `options.rerun` names (their earlier results set aside, `set_aside`). Points
    whose results fail verification run again, named on stderr. Ctrl-C: see `guard`; points not started are
    `remaining`, as are those not started once the sweep's `time_budget_s` has passed (`budget` set on them)."""
    from tqdm import tqdm

    options = options or ExecutionOptions()
    bad = bad_points(sweep)
    if bad:
        named = "; ".join(f"{pid} ({why})" for pid, why in bad.items())
        print(f"re-running {len(bad)} points that fail verification: {named}", file=sys.stderr)
    links = set(clean_unfinished(sweep))
    todo, outcomes = [], []
    for p in sweep.points:
        if point_dir(sweep, p) in links:
            linked = "its point folder is a symlink: not followed"
            outcomes.append(PointOutcome(p.point_id, PointStatus.FAILED, error=linked))
        elif p.point_id in options.rerun or not is_finished(point_dir(sweep, p)):
            todo.append(p)
        else:
            outcomes.append(PointOutcome(p.point_id, PointStatus.SKIPPED))
    bar = tqdm(
        total=len(sweep.points),
        initial=len(outcomes),
        desc=f"sweep {sweep.name}",
        disable=not options.progress,
        unit="point",
    )
    record = _recorder(sweep, outcomes, bar)
    with Interrupts() as interrupts:
        if options.executor == "dask":
            _run_on_cluster(sweep, todo, options, dask_executor.Progress(bar, record), interrupts)
        else:
            _run_points(sweep, todo, options, record, interrupts)
    bar.close()
    for outcome in outcomes:
        outcome.rerun_because = bad.get(outcome.point_id)
    return outcomes


def bad_points(sweep: Sweep) -> dict[str, str]:
    """Point id -> why, for the sweep's points that have results which fail verification."""
    found = {}
    for point in sweep.points:
        directory = point_dir(sweep, point)
        if (directory / "results.parquet").exists() or (directory / "manifest.json").exists():
            problem = point_problem(directory)
            if problem:
                found[point.point_id] = problem
    return found


def _recorder(sweep: Sweep, outcomes: list[PointOutcome], bar) -> Callable[[PointOutcome], None]:
    def record(outcome: PointOutcome) -> None:
        outcomes.append(outcome)
        bar.update(1)
        done = sum(o.status.finished for o in outcomes)
        failed = sum(o.status is PointStatus.FAILED for o in outcomes)
        bar.set_postfix(done=done, failed=failed, remaining=len(sweep.points) - done - failed)

    return record


def _run_on_cluster(
    sweep: Sweep, todo: list[Point], options: ExecutionOptions, progress: dask_executor.Progress, interrupts: Interrupts
) -> None:
    policy, rerun = options.policy(sweep, interrupts=interrupts), options.rerun
    if options.session is not None:
        dask_executor.run_points(sweep, todo, options.session, progress=progress, policy=policy, rerun=rerun)
        return
    with dask_executor.open_session(sweep, scheduler=None, workers=options.workers) as local:
        dask_executor.run_points(sweep, todo, local, progress=progress, policy=policy, rerun=rerun)


def _run_points(
    sweep: Sweep,
    todo: list[Point],
    options: ExecutionOptions,
    record: Callable[[PointOutcome], None],
    interrupts: Interrupts,
) -> None:
    import time

    deadline = time.monotonic() + sweep.time_budget_s if sweep.time_budget_s else None

    def run_one(point: Point) -> PointOutcome:
        if interrupts.stopping:
            return PointOutcome(point.point_id, PointStatus.REMAINING)
        if deadline is not None and time.monotonic() > deadline:
            return PointOutcome(point.point_id, PointStatus.REMAINING, budget=True)
        return execute_point(sweep, point, options=options, interrupts=interrupts)

    workers = options.workers
    if workers == 1:
        for point in todo:
            record(run_one(point))
    else:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=workers) as pool:  # each point runs in its own kernel process
            for future in as_completed([pool.submit(run_one, p) for p in todo]):
                record(future.result())


def setup_arg_parser() -> console.Parser:
    parser = console.parser("sweep", "expand a sweep file and execute its points with papermill (resumable)")
    parser.add_argument("params", help="params/<sweep>.yaml")
    parser.add_argument(
        "--workers",
        type=console.int_at_least(1, 64),
        default=1,
        help="points at once (default 1: timed points never overlap; more is recorded and flagged)",
    )
    parser.add_argument("--executor", choices=("local", "dask"), default="local")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (implies --executor dask; see docs/sweeps.md)")
    parser.add_argument(
        "--share-machines",
        action="store_true",
        help="on Dask: let timed points share a machine (no 'timed' resource; what overlapped is recorded)",
    )
    parser.add_argument("--timeout", type=console.positive_int, help="seconds per notebook cell")
    parser.add_argument("--retries", type=console.int_at_least(0, 10))
    parser.add_argument(
        "--max-points", type=console.positive_int, default=MAX_POINTS, help=f"allow more points (default {MAX_POINTS})"
    )
    parser.add_argument("--prepare-only", action="store_true", help="write parameterised notebooks, run nothing")
    parser.add_argument(
        "--plan", action="store_true", help="print the rounds and minutes each point's precision will take, run nothing"
    )
    parser.add_argument("--pilot-rounds", type=console.int_at_least(3, 100), default=6, help="A/A rounds of a pilot")
    parser.add_argument(
        "--rerun",
        nargs="?",
        const="all",
        metavar="IDS",
        help="measure finished points again (all, or comma-separated point ids); earlier results are kept "
        "under <point>/.replaced/",
    )
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    if args.scheduler:
        args.executor = "dask"
    try:
        plan = load_sweep(args.params, max_points=args.max_points, progress=not args.json)
        if args.plan:
            from workbench.sweep import plan as planning

            rows = planning.plan(plan, pilot_rounds=args.pilot_rounds)
            console.print_json({"sweep": plan.name, "plan": rows}) if args.json else planning.print_plan(rows)
            return 0
        with _cluster(plan, args) as session:  # the scheduler answers, and its workers can run the points, first
            check_writable(plan.root, need_bytes=POINT_BYTES * len(plan.points))
            with hold(plan.root):
                record_sweep_file(plan)
                return _main(plan, args, session)
    except KeyboardInterrupt:  # outside the points (validation, set-up): nothing to resume from
        print("workbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _cluster(plan: Sweep, args):
    """The Dask session of a `--executor dask` sweep (connected and checked), else nothing."""
    import contextlib

    if args.executor != "dask" or args.prepare_only:
        return contextlib.nullcontext()
    share = args.share_machines
    return dask_executor.open_session(plan, scheduler=args.scheduler, workers=args.workers, share_machines=share)


def record_sweep_file(plan: Sweep) -> None:
    """Record the sweep file's hash and points in `sweep.json`; say when it changed and points went stale."""
    ids = [p.point_id for p in plan.points]
    previous, record = integrity.write_sweep_record(
        plan.root, sweep_file=plan.path, experiment=plan.experiment, point_ids=ids
    )
    stale = integrity.scan_sweep(plan.root).stale
    if previous.get("sha256") not in (None, record["sha256"]) or stale:
        print(
            f"note: {len(stale)} points under {plan.root} are not in {plan.path} (stale): reports leave them out "
            "unless --include-stale",
            file=sys.stderr,
        )


def _main(plan: Sweep, args, session: dask_executor.Session | None = None) -> int:
    summary = {"sweep": plan.name, "points": len(plan.points), "root": str(plan.root), "workers": args.workers}
    if args.prepare_only:
        for point in plan.points:
            print(prepare_point(plan, point, workers=args.workers) / "prepared.ipynb")
        summary["prepared"] = len(plan.points)
        console.print_json(summary) if args.json else console.print_table(summary)
        return 0
    if args.workers > 1 and not args.scheduler:
        print(
            f"warning: {args.workers} timed points will run at once and share this machine; "
            "their speed numbers are flagged in the report",
            file=sys.stderr,
        )
    options = ExecutionOptions(
        workers=args.workers,
        executor=args.executor,
        session=session,
        timeout_s=args.timeout,
        retries=args.retries,
        rerun=frozenset(rerun_ids(plan, args.rerun)),
    )
    outcomes = run_sweep(plan, options)
    failed = [o for o in outcomes if o.status is PointStatus.FAILED]
    counts = count(outcomes)
    rerun = {o.point_id: o.rerun_because for o in outcomes if o.rerun_because is not None}
    summary.update(counts, rerun=len(rerun))
    cluster = dask_executor.worker_summary(outcomes, session) if session is not None else {}
    if args.rerun:
        summary["remeasured"] = counts[PointStatus.DONE.summary_key]
    if args.json:
        failures = [o.as_dict() for o in failed]
        console.print_json({**summary, **cluster, "failures": failures, "rerun_points": rerun})
    else:
        console.print_table(summary)
        for name, counts_of in cluster.get("per_worker", {}).items():
            print(f"worker {name}: {counts_of['done']} done, {counts_of['failed']} failed")
        for name in cluster.get("lost_workers", []):
            print(f"lost worker {name} during the sweep (its points ran again elsewhere)")
        for o in failed:
            where = f" on worker {o.worker}" if o.worker else ""
            see = f" (see {o.executed_notebook})" if o.executed_notebook else ""
            print(f"failed {o.point_id}{where}: {o.error}{see}")
    over_budget = sum(o.budget for o in outcomes)
    if over_budget and not counts["interrupted"] and over_budget == counts["remaining"]:
        print(
            f"note: the sweep's time_budget_s ({plan.time_budget_s} s) was spent: {over_budget} points not started; "
            "run the same command to continue",
            file=sys.stderr,
        )
        return 1 if failed else 0
    if counts["interrupted"] or counts["remaining"]:
        left = counts["interrupted"] + counts["remaining"]
        print(f"workbench: interrupted: {left} points not finished; run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(console.entry(main))
