"""Presentation only: charts (pure `DataFrame -> alt.Chart`), formatted tables, the offline HTML report and the
ipywidgets dashboard. Nothing here measures or decides.

- `charts`, `experiment_charts` (each experiment's own chart), `tables`, `report` (`workbench report`),
  `endpoint_section` (the report's served-endpoint section), `dashboard`.
"""

__all__ = ["charts", "dashboard", "endpoint_section", "experiment_charts", "report", "tables"]
