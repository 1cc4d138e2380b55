"""What happened to each point of a sweep run: a typed record with an enum status, and the summary's counts.

Both executors (local, Dask) hand back one `PointOutcome` per point; `workbench sweep` counts them into its summary
(`ran`, `skipped`, `interrupted`, `remaining`, `failed`) and prints the failed ones (`failures` in `--json`,
`PointOutcome.as_dict`). The status values are the strings the sweep has always printed, so `PointStatus("done")`
reads any earlier record and the JSON output is unchanged.

    workbench sweep params/smoke.yaml --json
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class PointStatus(str, Enum):
    """Where one point stands after a sweep run (declared in the summary's order)."""

    DONE = "done"  # ran now and finished
    SKIPPED = "skipped"  # finished by an earlier run (resume)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C while it ran; a resume runs it again
    REMAINING = "remaining"  # not started: Ctrl-C, or the sweep's time budget was spent
    FAILED = "failed"  # ran and did not finish: `error` says why

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """The point holds verified results now (ran, or an earlier run did)."""
        return self in (PointStatus.DONE, PointStatus.SKIPPED)

    @property
    def summary_key(self) -> str:
        """Its count's name in the sweep summary: `ran` for points that ran now (`done` would read as
        including the skipped ones), else the status itself."""
        return "ran" if self is PointStatus.DONE else self.value


@dataclass
class PointOutcome:
    """One point's outcome. Fields that do not apply stay None (or False)."""

    point_id: str
    status: PointStatus
    error: str | None = None  # why it failed, one line
    executed_notebook: str | None = None  # the failed point's executed notebook, when there is one
    on_cluster: bool = False  # run (or tried) on a Dask worker: its record names the worker, even an unknown one
    worker: str | None = None  # the Dask worker's name
    seconds: float | None = None  # on the worker's clock, a point done on a Dask worker
    client_cost: dict[str, float] | None = None  # what taking the point back cost the client (fetch, verify, write)
    budget: bool = False  # remaining because the sweep's `time_budget_s` was spent
    rerun_because: str | None = None  # its earlier results failed verification, so it ran again: why

    def as_dict(self) -> dict[str, object]:
        """The record `--json` prints: the fields that apply, in a fixed order."""
        record: dict[str, object] = {"point_id": self.point_id}
        if self.on_cluster:
            record["worker"] = self.worker
        record["status"] = self.status.value
        if self.error is not None:
            record["error"] = self.error
        if self.executed_notebook is not None or (self.on_cluster and self.status is PointStatus.FAILED):
            record["executed_notebook"] = self.executed_notebook
        if self.seconds is not None:
            record["seconds"] = self.seconds
        if self.client_cost is not None:
            record["client_cost"] = self.client_cost
        if self.budget:
            record["budget"] = True
        if self.rerun_because is not None:
            record["rerun"] = self.rerun_because
        return record


def count(outcomes: Iterable[PointOutcome]) -> dict[str, int]:
    """Points per status, named as the summary names them: ran, skipped, interrupted, remaining, failed."""
    statuses = [o.status for o in outcomes]
    return {status.summary_key: statuses.count(status) for status in PointStatus}
