"""What "finished" means, checked rather than assumed, and what a sweep folder holds.

A run or sweep point is finished when its `results.parquet` matches `manifest.json` (row count,
size and SHA-256), which is written last and atomically: a truncated, replaced or half-written
parquet is not a finished point, so `sweep` runs it again and `report`/`sweeps` name it and leave
it out. A sweep folder also holds `sweep.json`, the record of the sweep file that last ran there
(its hash and its point ids): points no longer in that file are stale and left out of reports
unless asked for. Anything else in the folder is stray and ignored with a note.

    outputs/sweeps/<sweep>/{sweep.json, .lock, <point_id>/{point.yaml, ..., results.parquet, manifest.json}}
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.paths import atomic_write_text

MANIFEST = "manifest.json"
RESULTS = "results.parquet"
SWEEP_RECORD = "sweep.json"


def manifest(rows: int, data: bytes) -> dict[str, Any]:
    return {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_manifest(directory: Path, rows: int, data: bytes) -> None:
    """The last file of a run: what `results.parquet` held when it was written."""
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(manifest(rows, data), indent=1))


def point_problem(directory: Path) -> str | None:
    """Why a run or point folder is not finished, in a few words; None when its parquet matches its manifest."""
    directory = Path(directory)
    parquet, recorded = directory / RESULTS, directory / MANIFEST
    if not parquet.is_file():
        return f"no {RESULTS}"
    if not recorded.is_file():
        return f"no {MANIFEST} (the run did not finish writing)"
    stamps = tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in (parquet.stat(), recorded.stat()))
    return _check(str(directory), stamps)  # a report scans a folder several times: hash each file once


@functools.lru_cache(maxsize=65536)
def _check(directory: str, stamps: tuple[tuple[int, int, int], ...]) -> str | None:
    import polars as pl

    parquet = Path(directory) / RESULTS
    try:
        recorded = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"unreadable {MANIFEST}"
    data = parquet.read_bytes()
    if not isinstance(recorded, dict) or manifest(recorded.get("rows", -1), data) != recorded:
        return f"{RESULTS} does not match its manifest (size or checksum)"
    try:
        rows = pl.scan_parquet(parquet).select(pl.len()).collect().item()
    except Exception:  # polars raises several types for a corrupt file; any of them means "not finished"
        return f"{RESULTS} does not read back"
    return None if rows == recorded["rows"] else f"{rows} rows, the manifest says {recorded['rows']}"


def read_point_meta(directory: Path) -> dict[str, Any] | None:
    import yaml

    try:
        meta = yaml.safe_load((Path(directory) / "point.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("params"), dict) else None


def read_sweep_record(root: Path) -> dict[str, Any]:
    try:
        record = json.loads((Path(root) / SWEEP_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_sweep_record(
    root: Path, *, sweep_file: Path, experiment: str, point_ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record the sweep file (path, SHA-256) and its point ids in `sweep.json`; returns (previous, new) records."""
    previous = read_sweep_record(root)
    record = {
        "file": str(sweep_file),
        "sha256": hashlib.sha256(Path(sweep_file).read_bytes()).hexdigest(),
        "experiment": experiment,
        "points": sorted(point_ids),
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(Path(root) / SWEEP_RECORD, json.dumps(record, indent=1))
    return previous, record


@dataclass
class SweepScan:
    """A sweep folder sorted: finished points (verified; stale ones only if asked) and everything left out."""

    root: Path
    include_stale: bool = False
    finished: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per problem a reader of this sweep's results should know about."""
        name = self.root.name
        lines = [f"sweep {name}: point {pid} left out: {why}" for pid, why in sorted(self.bad.items())]
        if self.stale:
            ids = ", ".join(self.stale[:5]) + (" ..." if len(self.stale) > 5 else "")
            fate = "included" if self.include_stale else "left out (--include-stale includes them)"
            lines.append(f"sweep {name}: {len(self.stale)} stale points, not in the current sweep file, {fate}: {ids}")
        return lines + [f"sweep {name}: {note}" for note in self.notes]


def scan_sweep(root: Path, *, include_stale: bool = False) -> SweepScan:
    """Sort a sweep folder's entries; stale points are those not in `sweep.json` (none if it is missing)."""
    root = Path(root)
    scan = SweepScan(root, include_stale)
    current = read_sweep_record(root).get("points")
    entries = sorted(root.iterdir()) if root.is_dir() else []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == SWEEP_RECORD:
            continue  # the lock, temporary folders of atomic writes, the sweep's record
        if not entry.is_dir():
            scan.notes.append(f"ignored stray file {entry.name}")
            continue
        names = {p.name for p in entry.iterdir()}
        if not names & {"point.yaml", RESULTS, MANIFEST, "error.json"}:
            scan.notes.append(f"ignored stray folder {entry.name}/")
            continue
        meta = read_point_meta(entry)
        problem = point_problem(entry)
        if meta is not None and current is not None and str(meta.get("point_id")) not in current:
            scan.stale.append(entry.name)
            if not include_stale:
                continue
        if problem is None and meta is None:
            scan.bad[entry.name] = "point.yaml is missing or unreadable"
        elif problem is None:
            scan.finished.append(entry)
        elif names & {RESULTS, MANIFEST}:
            scan.bad[entry.name] = problem
        elif "error.json" in names:
            scan.failed.append(entry.name)
        else:
            scan.unfinished.append(entry.name)
    return scan
