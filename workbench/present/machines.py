"""Which machines measured a sweep, for the report: how many, which points each ran, and a warning when
the hardware differs across points whose numbers the report places side by side.

Each verified point's `env.json` holds its machine's fingerprint (`machine`: chip, cores, memory,
backend, a hostname hash) and, for a point run on a Dask worker, the worker (`worker`). Comparisons
stay within a run, so a verdict never pools machines; the charts, the Pareto front and the SLO table
do put points next to each other, and the report says so when their machines differ.

    workbench report SWEEP
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from workbench.paths import outputs_dir
from workbench.results import integrity

HARDWARE = ("chip", "cores", "memory_bytes", "backend")


@dataclass
class Machines:
    """One row per verified point: point_id, machine_id, machine (label), hardware (text), worker."""

    points: pl.DataFrame

    @property
    def count(self) -> int:
        return self.points["machine_id"].n_unique() if self.points.height else 0

    @property
    def workers(self) -> int | None:
        named = self.points["worker"].drop_nulls()
        return named.n_unique() if named.len() else None

    def warnings(self) -> list[str]:
        """A line when the points' hardware differs (their numbers sit side by side in charts and tables)."""
        kinds = self.points["hardware"].unique(maintain_order=True).to_list() if self.points.height else []
        if len(kinds) < 2:
            return []
        return [
            f"the points were measured on {self.count} machines with different hardware ({'; '.join(kinds)}): the "
            "charts, the Pareto front and the SLO table place their numbers side by side; each verdict compares "
            "within one run, but across points compare with care (see Machines)"
        ]

    def to_json(self) -> dict:
        by_machine = self.points.group_by("machine_id", "machine", maintain_order=True).agg(
            pl.col("point_id").sort().alias("points"), pl.col("worker").drop_nulls().unique().sort().alias("workers")
        )
        return {"count": self.count, "workers": self.workers, "machines": by_machine.to_dicts()}


def describe(sweep: str, *, include_stale: bool = False) -> Machines:
    """The machines of a sweep's verified points, from their env.json (points without a fingerprint: 'unknown')."""
    rows = []
    for directory in integrity.scan_sweep(outputs_dir() / "sweeps" / sweep, include_stale=include_stale).finished:
        env = _read_json(directory / "env.json")
        machine, worker = env.get("machine") or {}, env.get("worker") or {}
        meta = integrity.read_point_meta(directory) or {}
        hardware = ", ".join(str(machine.get(k)) for k in HARDWARE) if machine else "unknown"
        rows.append(
            {
                "point_id": str(meta.get("point_id", directory.name)),
                "machine_id": machine.get("machine_id", "unknown"),
                "machine": machine.get("label", "unknown (measured before machines were recorded)"),
                "hardware": hardware,
                "worker": worker.get("name"),
            }
        )
    schema = {k: pl.String for k in ("point_id", "machine_id", "machine", "hardware", "worker")}
    return Machines(pl.DataFrame(rows, schema=schema))


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def section(report):
    """'Measured on N machines': one line for one machine; the points grouped by machine for more."""
    from IPython.display import HTML

    found: Machines = report.machines
    workers = f" by {found.workers} Dask workers" if found.workers else ""
    head = f"<p>Measured on <b>{found.count} machine{'s' if found.count != 1 else ''}</b>{workers}.</p>"
    if found.count <= 1:
        label = found.points["machine"][0] if found.points.height else "unknown"
        return HTML(head + f"<p>{html.escape(label)}</p>")
    rows = []
    for machine in found.to_json()["machines"]:
        points = found.points.filter(machine_id=machine["machine_id"]).sort("point_id")
        for i, point in enumerate(points.iter_rows(named=True)):
            first = f'<td rowspan="{points.height}">{html.escape(machine["machine"])}</td>' if i == 0 else ""
            rows.append(f"<tr>{first}<td>{point['point_id']}</td><td>{html.escape(point['worker'] or '')}</td></tr>")
    table = "<table><tr><th>Machine</th><th>Point</th><th>Worker</th></tr>" + "".join(rows) + "</table>"
    return HTML(head + table)
