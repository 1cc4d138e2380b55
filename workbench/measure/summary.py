"""The one speed summary: per group of request rows, the medians and tails of the per-request figures, peak
memory, and throughput over the measured windows.

Throughput is generated tokens (or requests) over the *summed windows of the group's (round, trial) units*: a
window is the wall time of one trial, shared by the requests in it, so it is counted once per unit. Every place
that summarises speed calls `speed_summary`: a run's variants and a sweep's configurations
(`analysis.per_variant`), `workbench bench` (`timed.run_summary`) and a served load level (`endpoint.slo`).

    speed_summary(rows.filter(kind="speed"), by=["run_id", "variant"])
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from workbench import stats

MEDIANS = ("ttft_s", "tpot_s", "e2e_s", "decode_tps", "prefill_tps")  # stored as `<metric>` (the p50)
TAILS = ("ttft_s", "tpot_s", "e2e_s")  # also `<metric>_p90`, `<metric>_p99`
TAIL_QUANTILES = (0.9, 0.99)
ITL_QUANTILES = (0.5, 0.9, 0.99)  # ITL pooled across requests: `itl_s_p50`, ...
_ALL = "__all__"


def speed_summary(speed: pl.DataFrame, by: Sequence[str] = ("variant",)) -> pl.DataFrame:
    """One row per `by` group (one row in all when `by` is empty) of request rows that carry `window_s`.

    Where rows have `ok` (served requests), a failed request counts in its trial's window but in no latency,
    token or request figure: throughput is what was delivered in the time the trial took."""
    keys = list(by) or [_ALL]
    if not by:
        speed = speed.with_columns(pl.lit(0).alias(_ALL))
    columns = set(speed.columns)
    aggs = [stats.quantile_expr(m, 0.5).alias(m) for m in MEDIANS if m in columns]
    aggs += [
        stats.quantile_expr(m, q).alias(f"{m}_p{round(q * 100)}") for m in TAILS if m in columns for q in TAIL_QUANTILES
    ]
    if "itl_s" in columns:
        aggs += [stats.quantile_expr("itl_s", q, pooled=True).alias(f"itl_s_p{round(q * 100)}") for q in ITL_QUANTILES]
    if "peak_mem_bytes" in columns:
        aggs.append(pl.col("peak_mem_bytes").max())
    aggs += [pl.col("generated_tokens").sum(), pl.len().alias("requests")]
    units = [c for c in ("round", "trial") if c in columns and c not in keys]
    windows = (
        speed.group_by(*keys, *units, maintain_order=True)
        .agg(pl.col("window_s").first())
        .group_by(keys, maintain_order=True)
        .agg(pl.col("window_s").sum(), pl.len().alias("trials"))
    )
    good = speed.filter(pl.col("ok").fill_null(True)) if "ok" in columns else speed
    out = (
        windows.join(
            good.group_by(keys, maintain_order=True).agg(aggs),
            on=keys,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )
        .with_columns(pl.col("generated_tokens").fill_null(0), pl.col("requests").fill_null(0))
        .with_columns(
            throughput_tps=_per_second(pl.col("generated_tokens")),
            throughput_rps=_per_second(pl.col("requests")),
        )
        .drop("window_s")
    )
    return out.drop(_ALL) if not by else out


def _per_second(count: pl.Expr) -> pl.Expr:
    return pl.when(pl.col("window_s") > 0).then(count / pl.col("window_s")).otherwise(None)
