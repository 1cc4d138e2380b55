"""A sweep's verified points as the report reads them (`integrity`): their rows, the environment of the first, how
each was measured, and how many failed. A bad or unknown sweep name, or a sweep without one verified point, is a
one-line `UsageError`."""

from __future__ import annotations

import json

import polars as pl

from workbench.errors import DataError, UsageError
from workbench.paths import outputs_dir
from workbench.results import integrity
from workbench.results.export import SWEEP_NAME


def scan(name: str, *, include_stale: bool = False) -> integrity.SweepScan:
    """A sweep's folder sorted into verified points and what is left out; a bad or unknown name, or a sweep
    without one verified point, is a `UsageError`."""
    if not SWEEP_NAME.fullmatch(name):
        raise UsageError(f"sweep name {name[:60]!r}: expected letters, digits, '-' and '_' only")
    root = outputs_dir() / "sweeps" / name
    found = integrity.scan_sweep(root, include_stale=include_stale)
    if not found.finished:
        raise UsageError(f"sweep {name!r} has no finished points under {root.parent}")
    return found


def load(sweep: str, *, include_stale: bool = False) -> tuple[pl.DataFrame, dict]:
    """Rows of a sweep's verified points and the environment of its first point."""
    from workbench.results.store import load_sweep_results

    found = scan(sweep, include_stale=include_stale)
    try:
        rows = load_sweep_results(sweep, include_stale=include_stale).collect()
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    env_files = [p / "env.json" for p in found.finished if (p / "env.json").is_file()]
    env = json.loads(env_files[0].read_text()) if env_files else {}
    return rows, env


def point_conditions(sweep: str, *, include_stale: bool = False) -> pl.DataFrame:
    """Per verified point: how many timed points ran at once (`workers`), machine load before/after, cores."""
    out = []
    for directory in integrity.scan_sweep(outputs_dir() / "sweeps" / sweep, include_stale=include_stale).finished:
        meta = integrity.read_point_meta(directory) or {}
        env_file = directory / "env.json"
        env = json.loads(env_file.read_text()) if env_file.is_file() else {}
        out.append(
            {
                "point_id": str(meta.get("point_id", directory.name)),
                "workers": meta.get("workers"),
                **{k: env.get(k) for k in ("load_before", "load_after", "cores")},
            }
        )
    schema = {"point_id": pl.String, "workers": pl.Int64, "load_before": pl.Float64}
    return pl.DataFrame(out, schema=schema | {"load_after": pl.Float64, "cores": pl.Int64}, strict=False)


def failures(sweep: str, *, include_stale: bool = False) -> tuple[int, int]:
    """(failed or unverifiable points, all points) of a sweep folder; stray entries and stale points not counted."""
    found = integrity.scan_sweep(outputs_dir() / "sweeps" / sweep, include_stale=include_stale)
    failed = len(found.failed) + len(found.bad)
    return failed, failed + len(found.finished) + len(found.unfinished)
