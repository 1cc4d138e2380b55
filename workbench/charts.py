"""Charts: pure `DataFrame -> alt.Chart` functions. No measuring, no file access.

Interactivity uses Vega-Lite params (legend filter, quality-floor slider, SLO rules), so it
survives export to static HTML.
"""

from __future__ import annotations

import altair as alt
import polars as pl

QUALITY_TITLES = {"task_accuracy": "task exact match", "perplexity": "held-out perplexity", "kl_mean": "KL vs baseline"}


AXIS_TITLES = {
    "ttft_s_p90": "TTFT p90 (s)",
    "ttft_s": "TTFT p50 (s)",
    "e2e_s": "E2E p50 (s)",
    "throughput_tps": "throughput (generated tok/s)",
    "decode_tps": "decode tok/s",
    "throughput_rps": "requests/s",
}


def tradeoff_scatter(
    configs: pl.DataFrame,
    *,
    quality: str = "task_accuracy",
    slo_ttft_s: float | None = None,
    slo_throughput_tps: float | None = None,
    x: str = "ttft_s_p90",
    y: str = "throughput_tps",
) -> alt.LayerChart:
    """x = TTFT p90, y = throughput (by default), colour = quality, shape = family; Pareto points ringed and
    connected. The SLO rules are drawn on the default axes."""
    data = configs.select(
        *dict.fromkeys(["variant", "family", "point_id", "ttft_s_p90", "throughput_tps", x, y, quality, "pareto"])
    )
    legend = alt.selection_point(fields=["family"], bind="legend")
    higher_better = quality not in ("perplexity", "kl_mean")
    values = data[quality].drop_nulls()
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    floor = alt.param(
        name="quality_floor",
        value=low if higher_better else high,
        bind=alt.binding_range(
            min=low, max=max(high, low + 1e-9), name=f"{QUALITY_TITLES.get(quality, quality)} floor "
        ),
    )
    keep = (alt.datum[quality] >= floor) if higher_better else (alt.datum[quality] <= floor)
    base = alt.Chart(data).encode(
        x=alt.X(f"{x}:Q", title=AXIS_TITLES.get(x, x), scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", title=AXIS_TITLES.get(y, y)),
    )
    points = (
        base.mark_point(filled=True, size=110)
        .encode(
            color=alt.Color(
                f"{quality}:Q",
                title=QUALITY_TITLES.get(quality, quality),
                scale=alt.Scale(scheme="viridis", reverse=not higher_better),
            ),
            shape=alt.Shape("family:N", title="optimisation"),
            opacity=alt.condition(legend, alt.value(1.0), alt.value(0.15)),
            tooltip=list(dict.fromkeys(["variant", "family", "point_id", x, y, quality, "pareto"])),
        )
        .add_params(legend, floor)
        .transform_filter(keep | alt.expr.isNaN(alt.datum[quality]))
    )
    front = base.transform_filter(alt.datum.pareto).mark_line(color="#d62728", strokeDash=[4, 2]).encode(order=f"{x}:Q")
    ring = base.transform_filter(alt.datum.pareto).mark_point(size=320, color="#d62728", strokeWidth=2)
    layers = [front, ring, points]
    if slo_ttft_s is not None and x == "ttft_s_p90":
        layers.append(
            alt.Chart(pl.DataFrame({"x": [slo_ttft_s]})).mark_rule(color="grey", strokeDash=[6, 3]).encode(x="x:Q")
        )
    if slo_throughput_tps and y == "throughput_tps":
        layers.append(
            alt.Chart(pl.DataFrame({"y": [slo_throughput_tps]}))
            .mark_rule(color="grey", strokeDash=[6, 3])
            .encode(y="y:Q")
        )
    return alt.layer(*layers).properties(title="Speed/quality tradeoff (Pareto front in red)", width=520, height=340)


def quality_vs_speed(configs: pl.DataFrame, *, quality: str = "perplexity", speed: str = "decode_tps") -> alt.Chart:
    data = configs.select("variant", "family", quality, speed)
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=90)
        .encode(
            x=alt.X(f"{speed}:Q", title=speed),
            y=alt.Y(f"{quality}:Q", title=QUALITY_TITLES.get(quality, quality), scale=alt.Scale(zero=False)),
            color="family:N",
            tooltip=["variant", quality, speed],
        )
        .properties(title="Quality vs speed by family", width=420, height=280)
    )


def latency_cdf(rows: pl.DataFrame, *, metric: str = "ttft_s") -> alt.Chart:
    """Empirical CDF of a per-request latency, one line per variant."""
    data = rows.filter(pl.col("kind") == "speed").select("variant", metric).drop_nulls()
    return (
        alt.Chart(data)
        .transform_window(
            cumulative_count="count()",
            sort=[{"field": metric}],
            groupby=["variant"],
        )
        .transform_joinaggregate(total="count()", groupby=["variant"])
        .transform_calculate(
            fraction="datum.cumulative_count / datum.total",
        )
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X(f"{metric}:Q", title=f"{metric} (s)"),
            y=alt.Y("fraction:Q", title="fraction of requests"),
            color="variant:N",
        )
        .properties(title=f"{metric} CDF", width=420, height=260)
    )


def batch_scaling(configs: pl.DataFrame) -> alt.Chart:
    data = configs.with_columns(
        pl.col("params")
        .str.json_path_match("$.batch_size")
        .cast(pl.Int64, strict=False)
        .fill_null(1)
        .alias("batch_size")
    )
    data = data.select("variant", "batch_size", "throughput_tps", "family")
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=80)
        .encode(
            x=alt.X("batch_size:Q", scale=alt.Scale(type="log", base=2), title="batch size"),
            y=alt.Y("throughput_tps:Q", title="generated tok/s"),
            color="family:N",
            tooltip=["variant", "throughput_tps"],
        )
        .properties(title="Throughput by batch size", width=420, height=260)
    )


def acceptance_by_position(table: pl.DataFrame) -> alt.Chart:
    """From `speculative.acceptance_table`: acceptance at each draft position."""
    return (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:O", title="draft position"),
            y=alt.Y("position_acceptance:Q", title="accepted", scale=alt.Scale(domain=[0, 1])),
            color="variant:N",
        )
        .properties(title="Speculative acceptance by draft position", width=420, height=260)
    )


def memory_by_variant(configs: pl.DataFrame) -> alt.Chart:
    data = configs.select("variant", "family", "peak_mem_bytes").with_columns(
        (pl.col("peak_mem_bytes") / 2**20).alias("peak_mib")
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("mean(peak_mib):Q", title="peak MLX memory (MiB), mean over runs"),
            y=alt.Y("variant:N", sort="-x"),
            color="family:N",
        )
        .properties(title="Peak memory by variant", width=420, height=alt.Step(16))
    )


def variant_bars(summary: pl.DataFrame, metric: str, title: str) -> alt.Chart:
    """One bar per variant of a per-variant summary (an experiment's default chart)."""
    data = summary.select("variant", pl.col("family").fill_null("baseline"), metric)
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("variant:N", title="variant", sort=None),
            y=alt.Y(f"{metric}:Q", title=title),
            color=alt.Color("family:N", title="family"),
            tooltip=["variant", "family", metric],
        )
        .properties(title=title, width=360, height=240)
    )
