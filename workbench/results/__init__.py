"""Rows and run folders: the one row schema, atomic writes, manifests, and reading runs and sweeps back.

- `store`: `SCHEMA`, `to_frame`, `write_run` (atomic; rows rescued on a failed write), `load`, `load_sweep_results`;
- `integrity`: what "finished" means (a manifest that matches the parquet), stale and corrupt points.

    from workbench import results
    lf = results.load()  # LazyFrame over every finished run
"""

from workbench.results.store import BASELINE, SCHEMA, load, load_sweep_results, to_frame

__all__ = ["BASELINE", "SCHEMA", "load", "load_sweep_results", "to_frame"]
