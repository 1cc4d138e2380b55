"""One root for every error the user can fix: `WorkbenchError`.

Only these become a one-line `workbench: error: ...` message with exit code 2 (as
papermill's `PapermillException`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Bad input or environment the user can fix; the message is one line that names the problem."""


class UsageError(WorkbenchError):
    """A bad command-line argument."""


class ConfigError(WorkbenchError):
    """An impossible or unknown config value; the message names `experiment.field`."""


class ModelError(WorkbenchError):
    """A model spec that cannot be resolved or loaded."""


class SweepError(WorkbenchError):
    """A sweep file or sweep folder that cannot run; the message is `file:key: problem`."""


class DataError(WorkbenchError):
    """A results, dataset or text file that is missing, corrupt or of the wrong shape."""


class OutputsError(WorkbenchError):
    """The outputs directory cannot be created, written or filled; or a write failed after measuring."""


def short(value: object, limit: int = 80) -> str:
    """At most `limit` characters of a value for an error message (never the whole of a hostile input)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
