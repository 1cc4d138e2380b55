"""How `run_sweep` executes a sweep: one parameter object (`ExecutionOptions`) that the CLI builds from its flags
and Python callers pass in, instead of a list of keywords; each point's notebook policy comes from it.

    workbench sweep params/smoke.yaml --workers 1 --executor dask --timeout 300 --retries 1 --rerun all
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from workbench.errors import UsageError
from workbench.paths import REPO_ROOT
from workbench.sweep.dask_executor import Session
from workbench.sweep.execute import NotebookPolicy
from workbench.sweep.guard import Interrupts
from workbench.sweep.spec import Sweep


@dataclass(frozen=True)
class ExecutionOptions:
    """How `run_sweep` executes a sweep's points: `workers` at a time (1: timed points never overlap) with the
    `local` executor, or on the Dask cluster of `session` (`dask` without one: a `LocalCluster` of `workers`);
    the cell timeout and retries (None: the sweep file's), a progress bar, and the finished points to measure
    again (`rerun`, point ids)."""

    workers: int = 1
    executor: Literal["local", "dask"] = "local"
    session: Session | None = None
    timeout_s: int | None = None
    retries: int | None = None
    progress: bool = True
    rerun: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.executor not in ("local", "dask"):
            raise UsageError(f"executor: {self.executor!r} is not one of local, dask")
        if self.workers < 1:
            raise UsageError(f"workers: {self.workers} is below 1")
        object.__setattr__(self, "rerun", frozenset(self.rerun))

    def policy(self, sweep: Sweep, *, cwd: Path = REPO_ROOT, interrupts: Interrupts | None = None) -> NotebookPolicy:
        """The notebook policy of one of `sweep`'s points: these options' timeout and retries, else the sweep's."""
        retries = sweep.retries if self.retries is None else self.retries
        return NotebookPolicy(self.timeout_s or sweep.timeout_s, retries, cwd=cwd, interrupts=interrupts)
