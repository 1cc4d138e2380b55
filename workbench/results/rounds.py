"""Rounds as the unit of a speed comparison: one value per (run, variant, round) and metric, from the rows.

Runs measure their arms in interleaved rounds (A B, B A, ...), so the variant's round and the baseline's round
are adjacent in time and share the machine's drift. A round's value is the mean over its trials (trials in a
round are correlated, so they are averaged before anything else) of each trial's figure:

- `throughput_tps`: generated tokens over the trial's window (what a deployment sees);
- `throughput_robust_tps`: generated tokens over (batches x the median batch time), the same quantity read with
  a median, so one stalled request does not drag the round (docs/metrics.md says which one a verdict uses);
- `ttft_s`, `e2e_s`, `decode_tps`: the trial's medians over its requests.

Per round the rows also carry the 1-minute load average at its start (`round_load`) and its wall time over
all arms (`round_wall_s`); `round_outlier` flags a round whose baseline is beyond 5 scaled MADs of the run's
rounds. Flagged rounds are kept and reported, never dropped.

Used by the stop rule of `experiments/rounds.py` (while a run measures) and by `analysis/verdicts.py`.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from workbench import stats

BASELINE = "baseline"
ROUND_METRICS = ("throughput_tps", "throughput_robust_tps", "ttft_s", "e2e_s", "decode_tps")
HIGHER_IS_BETTER = {"throughput_tps": True, "throughput_robust_tps": True, "decode_tps": True}
HIGHER_IS_BETTER |= {"ttft_s": False, "e2e_s": False}
HEADLINE = ("throughput_tps", "ttft_s")  # what a precision target is reached on
OUTLIER_MADS = 5.0
KEYS = ("run_id", "point_id", "variant", "family", "workload_hash")


def _complete(df: pl.DataFrame) -> pl.DataFrame:
    fill = {"point_id": pl.String, "family": pl.String, "workload_hash": pl.String, "batch_index": pl.Int32}
    fill |= {"round_load": pl.Float64, "round_wall_s": pl.Float64, "round_outlier": pl.Boolean}
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in fill.items() if c not in df.columns]
    df = df.with_columns(missing) if missing else df
    return df.with_columns(pl.col("point_id").fill_null(pl.col("run_id")), pl.col("batch_index").fill_null(0))


def round_samples(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (run, point, variant, round) of the speed rows that recorded a round, with `ROUND_METRICS`
    (trials averaged), `trials`, `round_load`, `round_wall_s` and `round_outlier` (null where not recorded)."""
    df = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
    if df.is_empty() or "round" not in df.columns:
        return pl.DataFrame(schema={**dict.fromkeys(KEYS, pl.String), "round": pl.Int32})
    speed = _complete(df.filter((pl.col("kind") == "speed") & pl.col("round").is_not_null()))
    batches = speed.group_by(*KEYS, "round", "trial", "batch_index").agg(
        pl.col("e2e_s").max().alias("batch_s"), pl.col("generated_tokens").sum().alias("batch_tokens")
    )
    robust = batches.group_by(*KEYS, "round", "trial").agg(
        (pl.col("batch_tokens").sum() / (pl.len() * pl.col("batch_s").median())).alias("throughput_robust_tps")
    )
    trials = speed.group_by(*KEYS, "round", "trial").agg(
        (pl.col("generated_tokens").sum() / pl.col("window_s").first()).alias("throughput_tps"),
        *[stats.quantile_expr(m, 0.5).alias(m) for m in ("ttft_s", "e2e_s", "decode_tps")],
        pl.col("round_load").first(),
        pl.col("round_wall_s").first(),
        pl.col("round_outlier").first(),
    )
    trials = trials.join(robust, on=[*KEYS, "round", "trial"], how="left", nulls_equal=True)
    return (
        trials.group_by(*KEYS, "round")
        .agg(
            *[pl.col(m).mean() for m in ROUND_METRICS],
            pl.len().alias("trials"),
            pl.col("round_load").first(),
            pl.col("round_wall_s").first(),
            pl.col("round_outlier").first(),
        )
        .sort("run_id", "point_id", "variant", "round", nulls_last=True)
    )


def paired(samples: pl.DataFrame, metric: str) -> dict[tuple[str, str, str], stats.PairedChange]:
    """(run_id, point_id, variant) -> the paired change of `metric` against the same run's baseline, round by
    round; variants measured on other prompts than their baseline (another workload) are left out."""
    if samples.is_empty():
        return {}
    ids = ["run_id", "point_id"]
    base = samples.filter(pl.col("variant") == BASELINE).select(
        *ids, "round", pl.col(metric).alias("_b"), pl.col("workload_hash").alias("_bw")
    )
    joined = samples.filter(pl.col("variant") != BASELINE).join(base, on=[*ids, "round"], how="inner")
    same = pl.col("workload_hash").eq_missing(pl.col("_bw")).all()  # another workload: no like-for-like change
    value, base_value = pl.col(metric).cast(pl.Float64), pl.col("_b").cast(pl.Float64)  # all-null when all failed
    ratio = (value / base_value).log()
    valid = (value > 0) & (base_value > 0)
    groups = joined.group_by(*ids, "variant").agg(same.alias("_same"), ratio.filter(valid).alias("_ratios"))
    out = {}
    for r in groups.filter("_same").iter_rows(named=True):
        out[(r["run_id"], r["point_id"], r["variant"])] = stats.paired_from_log_ratios(r["_ratios"] or [])
    return out


def half_widths(samples: pl.DataFrame, metrics: Iterable[str] = HEADLINE) -> dict[str, float]:
    """variant -> the largest relative half-width (`PairedChange.precision`, a fraction) over `metrics` of its
    paired change: what a `precision` target is checked against; NaN while unknown."""
    out: dict[str, float] = {}
    for metric in metrics:
        for (_, _, variant), change in paired(samples, metric).items():
            out[variant] = max(out.get(variant, 0.0), change.precision) if change.rounds >= 2 else float("nan")
    return out


def outlier_rounds(samples: pl.DataFrame, metric: str = "throughput_tps") -> set[tuple[str, int]]:
    """(run_id, round) of each baseline round beyond `OUTLIER_MADS` scaled MADs of its run's rounds."""
    if samples.is_empty():
        return set()
    value = pl.col(metric)
    median = value.median().over("run_id")
    mad = 1.4826 * (value - median).abs().median().over("run_id")  # as `stats.mad_outliers`
    base = samples.filter((pl.col("variant") == BASELINE) & value.is_not_null())
    marked = base.with_columns(_n=pl.len().over("run_id"), _far=(value - median).abs() > OUTLIER_MADS * mad)
    found = marked.filter((pl.col("_n") >= 4) & pl.col("_far"))
    return set(zip(found["run_id"].to_list(), found["round"].to_list()))
