"""Executing one point's notebook with papermill: the one place both executors (local, Dask worker) call.

Failures that may pass on retry (a kernel that did not start) are retried with backoff; a cell that raised
is deterministic and is not, nor is a point stopped by Ctrl-C twice. The template is `notebooks/10_experiment.ipynb`
of this checkout or installed package; a Dask worker gets its content with the task (`cluster.PointTask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.paths import REPO_ROOT
from workbench.sweep.guard import Interrupts

NOTEBOOK = REPO_ROOT / "notebooks" / "10_experiment.ipynb"


def run_notebook(notebook: Path, executed: Path, parameters: dict, *, policy: NotebookPolicy) -> str | None:
    """Execute a parameterised notebook with papermill; None when it ran, else the error in one line. Failures that
    may pass on retry (kernel start) are retried with backoff; a cell that raised, or Ctrl-C twice, is not."""
    import papermill
    import tenacity
    from papermill.exceptions import PapermillExecutionError

    from workbench.jupyter_kernel import KERNEL_NAME

    interrupts = policy.interrupts
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(  # a cell raised: deterministic; Ctrl-C twice: stop
            lambda exc: not isinstance(exc, PapermillExecutionError) and not (interrupts and interrupts.aborted)
        ),
        stop=tenacity.stop_after_attempt(policy.retries + 1),
        wait=tenacity.wait_exponential(multiplier=1, max=30),
        reraise=True,
    )
    try:
        retrying(
            papermill.execute_notebook,
            str(notebook),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            cwd=str(policy.cwd),
            progress_bar=False,
            request_save_on_cell_execute=False,  # one write at the end, not one per cell
            execution_timeout=policy.timeout_s,
        )
    except PapermillExecutionError as exc:
        return f"{exc.ename}: {exc.evalue}".splitlines()[0]
    except Exception as exc:  # kernel start/death, timeout, after the retries
        return f"{type(exc).__name__}: {exc}".splitlines()[0] or type(exc).__name__
    return None


@dataclass(frozen=True)
class NotebookPolicy:
    """How one point's notebook is executed: cell timeout, retries, working directory, Ctrl-C state."""

    timeout_s: int
    retries: int
    cwd: Path = REPO_ROOT
    interrupts: Interrupts | None = None
