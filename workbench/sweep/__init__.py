"""Sweeps: a sweep file expands into points; each point is one papermill-executed notebook.

- `spec`: the sweep file's model, its points and their validation before anything runs;
- `runner`: `workbench sweep`: expansion, execution (local, Dask; `execute.ExecutionOptions`), resume;
- `outcome`: what happened to each point, a `PointOutcome` with a `PointStatus` enum, and the summary's counts;
- `guard`: one sweep at a time per sweep folder (a lock), and Ctrl-C that stops cleanly.
"""

__all__ = ["guard", "outcome", "runner", "spec"]
