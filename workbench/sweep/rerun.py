"""`workbench sweep --rerun [IDS]`: measure finished points again on purpose, keeping what they measured before.

A finished point is normally skipped (resume). `--rerun` (all points) or `--rerun ID,ID` names points to measure
again; before one runs, its results, manifest, environment, params and executed notebook move to
`<point>/.replaced/<UTC time>/`, so a re-measurement never loses the earlier one.

    workbench sweep params/default.yaml --rerun            # every point
    workbench sweep params/default.yaml --rerun 59a231517e78
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import UsageError
from workbench.sweep.spec import Sweep

REPLACED = ".replaced"


def set_aside(directory: Path) -> Path:
    """Before a finished point is measured again (`--rerun`): its results, manifest, environment and executed
    notebook move to `<point>/.replaced/<UTC time>/`, so nothing measured is lost."""
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = directory / REPLACED / stamp
    target.mkdir(parents=True)
    for name in ("results.parquet", "manifest.json", "env.json", "params.yaml", "executed.ipynb"):
        if (directory / name).exists():
            (directory / name).rename(target / name)
    return target


def rerun_ids(plan: Sweep, given: str | None) -> set[str]:
    """The point ids `--rerun` names (all of the sweep's for `all`); an unknown id is a one-line error."""
    if not given:
        return set()
    ids = {p.point_id for p in plan.points}
    if given == "all":
        return ids
    asked = {part.strip() for part in given.split(",") if part.strip()}
    unknown = sorted(asked - ids)
    if unknown:
        raise UsageError(f"--rerun: {', '.join(unknown)} is not a point of {plan.path}")
    return asked
