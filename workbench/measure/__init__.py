"""Measuring a model in process: the one timed loop, the one speed summary, and quality.

- `timed`: `stream_timed`, `measure_generation` -> `RequestRecord` (the only clock around mlx-lm);
- `summary`: `speed_summary`, the one summary of request rows (medians, tails, throughput over windows);
- `quality`: perplexity, fidelity (KL, greedy agreement), task scores; `evalsets`: users' eval sets;
  `lm_eval_tasks`: lm-evaluation-harness through mlx-lm; `evaluate`: `workbench eval`;
- `bench`: `workbench bench` in process; `runs`: what a measuring command does before and after.
"""

__all__ = ["bench", "evalsets", "evaluate", "lm_eval_tasks", "quality", "runs", "summary", "timed"]
