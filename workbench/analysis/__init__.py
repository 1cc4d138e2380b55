"""Decisions from rows: which changes are real, what each configuration is, what to recommend, what fails.

- `per_variant`: one row per (run, variant) with its declared identity, speed and quality;
- `significance`: per-trial samples and comparisons with intervals; `decisions`: the Pareto front and
  recommendations; `gates`: SLO file checks and regressions; `run_summary`: one run's summary per variant.
"""

__all__ = ["decisions", "gates", "per_variant", "run_summary", "significance"]
