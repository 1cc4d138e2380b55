"""Sweeps: a sweep file expands into points; each point is one papermill-executed notebook.

- `spec`: the sweep file's model, its points and their validation before anything runs;
- `runner`: `workbench sweep` / `workbench sweeps`: expansion, execution (local, Dask), resume, outcomes;
- `guard`: one sweep at a time per sweep folder (a lock), and Ctrl-C that stops cleanly.
"""

__all__ = ["guard", "runner", "spec"]
