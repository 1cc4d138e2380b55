"""The sweep file: its keys, its points, and validating all of them before anything runs.

A sweep file names an experiment, `fixed` parameters, and either a `grid` (cartesian product of
lists) or explicit `points` (each may carry a `label:`, its name in tables and reports; not part of its
id). Each point's config is the experiment's defaults < `fixed` < the point,
built by `experiments.build_config`, the same function the notebook calls, so what is validated is
exactly what runs. A point's id is a stable hash of its parameters. Inputs are bounded: the YAML
(`yamlfile.read_yaml_mapping`), the number of points (`MAX_POINTS` unless `--max-points`), the name (a
slug: it becomes a folder under `outputs/sweeps/`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.errors import SweepError, WorkbenchError, short
from workbench.paths import outputs_dir

MAX_POINTS = 10_000
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # a sweep name is a folder under outputs/sweeps: nothing else


class SweepFile(BaseModel):
    """The keys a sweep file may have."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, pattern=SLUG)
    description: str = ""
    experiment: str
    fixed: dict = Field(default_factory=dict)
    grid: dict[str, list] | None = None
    points: list[dict] | None = Field(None, min_length=1)
    timeout_s: int = Field(1800, ge=1, le=7 * 86400)
    retries: int = Field(2, ge=0, le=10)
    time_budget_s: int | None = Field(None, ge=1, le=30 * 86400)  # no new point starts once this much has passed


@dataclass(frozen=True)
class Point:
    point_id: str
    params: dict
    label: str | None = None  # a point's `label:`, its name in tables and reports; not a parameter, not in its id


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    experiment: str
    points: tuple
    timeout_s: int = 1800
    retries: int = 2
    fixed: dict = field(default_factory=dict)
    time_budget_s: int | None = None

    @property
    def root(self) -> Path:
        return outputs_dir() / "sweeps" / self.name


def point_id(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def split_label(params: dict) -> tuple[dict, str | None]:
    """(the point's parameters, its `label:`); a label must be a short non-empty string."""
    params = dict(params)
    label = params.pop("label", None)
    if label is not None and (not isinstance(label, str) or not label.strip() or len(label) > 80):
        raise SweepError(f"label: expected a non-empty string of at most 80 characters, got {short(repr(label))}")
    return params, label.strip() if label else None


def expand(fixed: dict, grid: dict | None, points: list | None) -> list[dict]:
    """The points of a sweep: fixed parameters merged with each grid combination or listed point."""
    if grid:
        keys = sorted(grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    else:
        combos = list(points or [{}])
    return [{**fixed, **combo} for combo in combos]


def _parse(path: Path, max_points: int = MAX_POINTS) -> SweepFile:
    from workbench import experiments
    from workbench.yamlfile import read_yaml_mapping

    raw = read_yaml_mapping(path, SweepError)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "file"
        raise SweepError(f"{path}:{key}: {short(error['msg'], 160)}") from None
    if spec.name is None and not re.fullmatch(SLUG, path.stem):
        raise SweepError(f"{path}:name: the file name is no sweep name (letters, digits, '-', '_'); give name:")
    if experiments.canonical(spec.experiment) not in experiments.names():
        choices = ", ".join(experiments.names())
        raise SweepError(f"{path}:experiment: must be one of {choices}, got {short(repr(spec.experiment))}")
    if spec.grid is not None and spec.points is not None:
        raise SweepError(f"{path}:grid: give either grid or points, not both")
    if spec.grid is not None:
        if not spec.grid or not all(spec.grid.values()):
            raise SweepError(f"{path}:grid: expected a mapping of non-empty lists")
    count = math.prod(len(v) for v in spec.grid.values()) if spec.grid is not None else len(spec.points or [{}])
    if count > max_points:
        key = "grid" if spec.grid is not None else "points"
        raise SweepError(f"{path}:{key}: more than {max_points} points ({count}); split the sweep or pass --max-points")
    return spec


def sweep_name(path: str | Path) -> str:
    """The name of a sweep file's folder under outputs/sweeps (its keys checked, its points not)."""
    path = Path(path)
    return _parse(path).name or path.stem


def load_sweep(path: str | Path, *, max_points: int = MAX_POINTS, progress: bool = False) -> Sweep:
    """Read and validate a sweep file completely: every point's config and models; raises SweepError `file:key`.
    At most `max_points` points; checking them is linear, with a progress bar on stderr when `progress`."""
    from tqdm import tqdm

    from workbench import experiments

    path = Path(path)
    spec = _parse(path, max_points)
    points = []
    expanded = expand(spec.fixed, spec.grid, spec.points)
    for params in tqdm(expanded, desc="checking points", unit="point", disable=not progress or len(expanded) < 100):
        try:
            params, label = split_label(params)
        except SweepError as exc:
            raise SweepError(f"{path}:points.{exc}") from None
        try:
            config = experiments.build_config(spec.experiment, None, params)
            experiments.check_models(config)
        except WorkbenchError as exc:
            key, _, problem = str(exc).partition(": ")
            key = key.split(".", 1)[1] if key.startswith(f"{spec.experiment}.") else "model"
            raise SweepError(f"{path}:{key}: {short(problem or exc, 200)}") from None
        points.append(Point(point_id(params), params, label))
    return Sweep(
        name=spec.name or path.stem,
        path=path,
        experiment=spec.experiment,
        points=tuple(points),
        timeout_s=spec.timeout_s,
        retries=spec.retries,
        fixed=spec.fixed,
        time_budget_s=spec.time_budget_s,
    )
