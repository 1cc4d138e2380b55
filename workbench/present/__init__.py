"""Presentation only: charts (pure `DataFrame -> alt.Chart`), formatted tables, the offline HTML report and the
ipywidgets dashboard. Nothing here measures or decides.

- `charts`, `experiment_charts` (each experiment's own chart), `tables`, `report` (`workbench report`),
  `endpoint_section` (the report's served-endpoint section), `dashboard`, `offline` (charts that draw with no
  network, in notebooks and the report).
"""

__all__ = ["charts", "dashboard", "endpoint_section", "experiment_charts", "offline", "report", "tables"]
