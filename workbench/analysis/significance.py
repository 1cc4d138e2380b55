"""Per-trial samples and the old A/A noise floor, kept as a *diagnostic*: verdicts come from paired rounds
(`workbench.analysis.verdicts`) and the floor gates nothing any more (issue 16).

- The unit of a sample is a trial of one variant in one round of its run, never a request (requests in one
  trial share the machine's state): throughput is the trial's generated tokens over its window, latencies
  are the trial's medians.
- The noise floor of a run is the A/A change of its baseline, even rounds against odd rounds (runs measure
  baseline and variants interleaved: A B A B ...), and the change of any A/A copy of the baseline measured
  as a variant (family `baseline`: a sweep point with the baseline's settings). With two rounds the floor is
  one difference of two samples, a noisy point estimate; the report shows it next to the paired intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from workbench import metrics, stats
from workbench.results.store import BASELINE

HIGHER_IS_BETTER = {
    m.name: m.higher_is_better for m in metrics.TABLE if m.name not in ("itl_s", "tpot_s", "prefill_tps")
}
SAMPLE_METRICS = metrics.SAMPLED


def trial_samples(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (run, variant, round, trial) of speed rows: throughput over the trial's window and the
    trial's medians of TTFT, E2E latency and decode speed. `round` is null where a run did not record it."""
    df = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
    if "round" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Int32).alias("round"))
    if "point_id" not in df.columns:
        df = df.with_columns(point_id=pl.col("run_id"))
    for column in ("family", "workload_hash"):
        if column not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(column))
    speed = df.filter(pl.col("kind") == "speed")
    keys = ("run_id", "point_id", "variant", "family", "workload_hash", "round", "trial")
    return (
        speed.group_by(*keys, maintain_order=True)
        .agg(
            (pl.col("generated_tokens").sum() / pl.col("window_s").first()).alias("throughput_tps"),
            *[stats.quantile_expr(m, 0.5).alias(m) for m in SAMPLE_METRICS if m != "throughput_tps"],
        )
        .sort("run_id", "variant", "round", "trial", nulls_last=True)
    )


def noise_floors(samples: pl.DataFrame, metrics: Sequence[str] = SAMPLE_METRICS) -> pl.DataFrame:
    """Per run and metric: the A/A change of the baseline, even rounds against odd ones (runs with >= 2
    rounds only, `source` "rounds"), and of every A/A copy of the baseline against it (`source` "aa-copy");
    `floor_pct` = |change_pct|."""
    out: list[dict[str, Any]] = []

    def add(run_id: str, source: str, a: pl.DataFrame, b: pl.DataFrame) -> None:
        for metric in metrics:
            d = stats.difference(a[metric], b[metric])
            floor = abs(d.change_pct) if math.isfinite(d.change_pct) else None
            out.append(
                {
                    "run_id": run_id,
                    "source": source,
                    "metric": metric,
                    "floor_pct": floor,
                    "ci_low_pct": d.ci_pct[0],
                    "ci_high_pct": d.ci_pct[1],
                    "n_even": d.n_a,
                    "n_odd": d.n_b,
                }
            )

    base = samples.filter((pl.col("variant") == BASELINE) & pl.col("round").is_not_null())
    for (run_id,), group in base.group_by("run_id", maintain_order=True):
        if group["round"].n_unique() >= 2:
            add(run_id, "rounds", group.filter(pl.col("round") % 2 == 0), group.filter(pl.col("round") % 2 == 1))
    copies = samples.filter((pl.col("family") == BASELINE) & (pl.col("variant") != BASELINE))
    for (run_id, _), group in copies.group_by("run_id", "variant", maintain_order=True):
        add(run_id, "aa-copy", samples.filter((pl.col("run_id") == run_id) & (pl.col("variant") == BASELINE)), group)
    schema = {"run_id": pl.String, "source": pl.String, "metric": pl.String, "floor_pct": pl.Float64}
    schema |= {"ci_low_pct": pl.Float64, "ci_high_pct": pl.Float64, "n_even": pl.Int64, "n_odd": pl.Int64}
    return pl.DataFrame(out, schema=schema).with_columns(pl.col(pl.Float64).fill_nan(None))


def sweep_noise_floor(floors: pl.DataFrame, metrics: Sequence[str] = SAMPLE_METRICS) -> dict[str, dict[str, Any]]:
    """Per metric: the median of the runs' floors (the sweep's floor), their max and how many runs had one;
    `median_pct` is None when no run had two rounds."""
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        rows = floors.filter(pl.col("metric") == metric)
        values = rows.filter(pl.col("source") == "rounds")["floor_pct"].drop_nulls().to_list()
        copies = rows.filter(pl.col("source") == "aa-copy")["floor_pct"].drop_nulls().to_list()
        out[metric] = {
            "median_pct": stats.percentile(values, 50) if values else None,
            "max_pct": max(values) if values else None,
            "runs": len(values),
            "aa_copy_max_pct": max(copies) if copies else None,
            "aa_copies": len(copies),
        }
    return out
