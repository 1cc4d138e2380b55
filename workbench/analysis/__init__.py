"""Decisions from rows: which changes are real, what each configuration is, what to recommend, what fails.

- `per_variant`: one row per (run, variant) with its declared identity, speed and quality;
- `significance`: per-trial samples and comparisons with intervals; `decisions`: the Pareto front and
  recommendations; `gates`: SLO file checks and regressions; `run_summary`: one run's summary per variant;
- `quality_compare`: quality of each variant against its baseline on the same items, chunks and prompts, with
  intervals and verdicts against `QualityMargins`.
"""

__all__ = ["decisions", "gates", "per_variant", "quality_compare", "run_summary", "significance"]
