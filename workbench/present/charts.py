"""Charts: pure `DataFrame -> alt.Chart` functions over aggregated frames (one row per configuration, or
CDF quantiles), never raw request rows, so a chart's size does not grow with the requests of a sweep.
No measuring, no file access.

Values are shown in the unit of `METRICS` (seconds as milliseconds, bytes as MiB) with human axis titles.
Interactivity uses Vega-Lite params (legend filter, quality-floor slider, SLO rules), so it survives export
to static HTML.
"""

from __future__ import annotations

from typing import cast

import altair as alt
import polars as pl

from workbench import metrics

# column: (human label, unit, factor from the stored unit to the shown one), from the one table in `metrics`
METRICS = {m.name: (m.label, m.unit, m.scale) for m in metrics.TABLE}
LOWER_IS_BETTER_QUALITY = tuple(name for name in metrics.QUALITY if not metrics.higher_is_better(name))


def title(metric: str) -> str:
    """'TTFT p90 (ms)': the human label of a column with its unit."""
    label, unit, _ = METRICS.get(metric, (metric, "", 1.0))
    return f"{label} ({unit})" if unit else label


def in_units(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """The columns converted to their display units (e.g. seconds to milliseconds), rounded to 4 digits."""
    known = [c for c in dict.fromkeys(columns) if c in METRICS and c in frame.columns]
    return frame.with_columns((pl.col(c).cast(pl.Float64) * METRICS[c][2]).round_sig_figs(4).alias(c) for c in known)


def _tooltip(*columns: str) -> list:
    return [
        alt.Tooltip(c, title=title(c)) if c in METRICS else alt.Tooltip(c, title=c.replace("_", " ")) for c in columns
    ]


def tradeoff_scatter(
    configs: pl.DataFrame,
    *,
    quality: str = "task_accuracy",
    slo_ttft_s: float | None = None,
    slo_throughput_tps: float | None = None,
    x: str = "ttft_s_p90",
    y: str = "throughput_tps",
) -> alt.LayerChart:
    """One point per configuration: x = TTFT p90, y = throughput (by default), colour = quality, shape =
    family; Pareto points ringed and connected; SLO rules drawn on the default axes."""
    columns = list(dict.fromkeys(["variant", "family", "point_id", x, y, quality, "pareto"]))
    data = in_units(configs.select(columns), x, y, quality)
    legend = alt.selection_point(fields=["family"], bind="legend")
    higher_better = quality not in LOWER_IS_BETTER_QUALITY
    values = data[quality].drop_nulls()
    low, high = (float(cast(float, values.min())), float(cast(float, values.max()))) if len(values) else (0.0, 1.0)
    floor = alt.param(
        name="quality_floor",
        value=low if higher_better else high,
        bind=alt.binding_range(min=low, max=max(high, low + 1e-9), name=f"{title(quality)} floor "),
    )
    keep = (alt.datum[quality] >= floor) if higher_better else (alt.datum[quality] <= floor)
    base = alt.Chart(data).encode(
        x=alt.X(f"{x}:Q", title=title(x), scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", title=title(y)),
    )
    points = (
        base.mark_point(filled=True, size=110)
        .encode(
            color=alt.Color(
                f"{quality}:Q", title=title(quality), scale=alt.Scale(scheme="viridis", reverse=not higher_better)
            ),
            shape=alt.Shape("family:N", title="optimisation"),
            opacity=alt.condition(legend, alt.value(1.0), alt.value(0.15)),
            tooltip=_tooltip(*columns),
        )
        .add_params(legend, floor)
        .transform_filter(keep | ~alt.expr.isValid(alt.datum[quality]))
    )
    front = base.transform_filter(alt.datum.pareto).mark_line(color="#d62728", strokeDash=[4, 2]).encode(order=f"{x}:Q")
    ring = base.transform_filter(alt.datum.pareto).mark_point(size=320, color="#d62728", strokeWidth=2)
    layers, notes = [front, ring, points], []
    rule = alt.Chart(pl.DataFrame({"v": [0.0]})).mark_rule(color="grey", strokeDash=[6, 3])
    for axis, column, target in (("x", "ttft_s_p90", slo_ttft_s), ("y", "throughput_tps", slo_throughput_tps)):
        if not target or (x, y)[axis == "y"] != column:
            continue
        shown, top = target * METRICS[column][2], cast(float | None, data[column].max())
        if top is not None and shown > 2 * top:  # a rule far off the data would squeeze every point into a corner
            notes.append(f"SLO {METRICS[column][0]} {'≤' if axis == 'x' else '≥'} {shown:,.4g} {METRICS[column][1]}")
        else:
            layers.append(rule.encode(**{axis: alt.datum(shown)}))
    heading = "Speed/quality tradeoff, one point per configuration (Pareto front in red)"
    subtitle = f"{'; '.join(notes)}: off the chart" if notes else "grey dashed lines: SLO targets"
    chart = alt.layer(*layers)
    shown_chart = chart.properties(title=alt.Title(heading, subtitle=subtitle), width=520, height=340)
    return cast(alt.LayerChart, shown_chart)  # a layer's properties() is a layer (altair's stub: or a facet)


def overlay(chart: alt.LayerChart, other: pl.DataFrame, *, name: str, x: str, y: str) -> alt.LayerChart:
    """`chart` (a `tradeoff_scatter`) with a second sweep's configurations on the same axes, as hollow black
    diamonds, so two sweeps read on one chart."""
    columns = [c for c in dict.fromkeys(["variant", "family", "point_id", x, y]) if c in other.columns]
    data = in_units(other.select(columns).drop_nulls([x, y]), x, y).with_columns(sweep=pl.lit(name))
    points = (
        alt.Chart(data)
        .mark_point(shape="diamond", filled=False, size=140, color="black", strokeWidth=1.5)
        .encode(x=f"{x}:Q", y=f"{y}:Q", tooltip=_tooltip("sweep", *columns))
    )
    heading = chart.title
    subtitle = [*([heading.subtitle] if isinstance(heading.subtitle, str) else heading.subtitle or [])]
    titled = chart.properties(title=alt.Title(heading.text, subtitle=[*subtitle, f"hollow black diamonds: {name}"]))
    return titled + points


def quality_vs_speed(configs: pl.DataFrame, *, quality: str = "perplexity", speed: str = "decode_tps") -> alt.Chart:
    """One point per configuration; a note instead of empty axes when no configuration measured `quality`."""
    heading = f"{METRICS[quality][0]} vs {METRICS[speed][0].lower()}"
    if quality not in configs.columns or configs[quality].drop_nulls().is_empty():
        note = pl.DataFrame({"text": [f"{METRICS[quality][0]}: not measured in this sweep"]})
        return alt.Chart(note).mark_text(size=14).encode(text="text:N").properties(title=heading, width=420, height=80)
    data = in_units(
        configs.select("variant", "family", "point_id", quality, speed).drop_nulls([quality, speed]), quality, speed
    )
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=90)
        .encode(
            x=alt.X(f"{speed}:Q", title=title(speed), scale=alt.Scale(zero=False)),
            y=alt.Y(f"{quality}:Q", title=title(quality), scale=alt.Scale(zero=False)),
            color=alt.Color("family:N", title="optimisation"),
            tooltip=_tooltip("variant", "point_id", quality, speed),
        )
        .properties(title=heading, width=420, height=280)
    )


def latency_cdf(quantiles: pl.DataFrame, *, metric: str = "ttft_s") -> alt.Chart:
    """From `analysis.latency_quantiles`: one step line per configuration, fraction of requests on y."""
    data = in_units(quantiles.select("label", "fraction", metric), metric)
    return (
        alt.Chart(data)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X(f"{metric}:Q", title=title(metric).replace(" p50", "")),
            y=alt.Y("fraction:Q", title="fraction of requests", axis=alt.Axis(format="%")),
            color=alt.Color("label:N", title="configuration"),
            tooltip=_tooltip("label", "fraction", metric),
        )
        .properties(title=f"{METRICS[metric][0].replace(' p50', '')} distribution (CDF)", width=420, height=260)
    )


def batch_scaling(configs: pl.DataFrame) -> alt.Chart:
    data = configs.with_columns(
        pl.col("params")
        .str.json_path_match("$.batch_size")
        .cast(pl.Int64, strict=False)
        .fill_null(1)
        .alias("batch_size")
    ).select("variant", "batch_size", "throughput_tps", "family")
    return (
        alt.Chart(in_units(data, "throughput_tps"))
        .mark_point(filled=True, size=80)
        .encode(
            x=alt.X("batch_size:Q", scale=alt.Scale(type="log", base=2), title="batch size (requests)"),
            y=alt.Y("throughput_tps:Q", title=title("throughput_tps")),
            color=alt.Color("family:N", title="optimisation"),
            tooltip=_tooltip("variant", "batch_size", "throughput_tps"),
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
            y=alt.Y(
                "position_acceptance:Q",
                title="draft tokens accepted (%)",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("variant:N", title="configuration"),
        )
        .properties(title="Speculative acceptance by draft position", width=420, height=260)
    )


def memory_by_variant(configs: pl.DataFrame, *, limit: int = 30) -> alt.Chart:
    """Mean peak memory per (family, variant) over runs, the `limit` largest."""
    data = (
        configs.group_by("family", "variant")
        .agg(pl.col("peak_mem_bytes").mean(), pl.len().alias("runs"))
        .drop_nulls("peak_mem_bytes")
        .sort("peak_mem_bytes", descending=True)
        .head(limit)
    )
    return (
        alt.Chart(in_units(data, "peak_mem_bytes"))
        .mark_bar()
        .encode(
            x=alt.X("peak_mem_bytes:Q", title=f"{title('peak_mem_bytes')}, mean over runs"),
            y=alt.Y("variant:N", sort="-x", title="configuration"),
            color=alt.Color("family:N", title="optimisation"),
            tooltip=_tooltip("variant", "family", "peak_mem_bytes", "runs"),
        )
        .properties(title="Peak memory by configuration", width=420, height=alt.Step(16))
    )


def variant_bars(summary: pl.DataFrame, metric: str, title: str) -> alt.Chart:
    """One bar per variant of a per-variant summary (an experiment's default chart)."""
    data = summary.select("variant", pl.col("family").fill_null("unknown"), metric)
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


def itl_histogram(rows: pl.DataFrame, title: str) -> alt.Chart:
    """Inter-token latencies of a run's speed rows, pooled per trial, in milliseconds."""
    itl = rows.filter(pl.col("kind") == "speed").select("trial", "itl_s").explode("itl_s")
    return (
        alt.Chart(itl.with_columns(itl_ms=pl.col("itl_s") * 1e3))
        .mark_bar()
        .encode(
            x=alt.X("itl_ms:Q", bin=alt.Bin(maxbins=40), title="inter-token latency (ms)"),
            y=alt.Y("count():Q", title="tokens"),
            color=alt.Color("trial:N", title="trial"),
        )
        .properties(title=title, width=480, height=240)
    )


def _series(levels: pl.DataFrame) -> pl.DataFrame:
    """A `series` label per configuration and load profile: one line each, through its levels."""
    return levels.with_columns(
        (pl.col("configuration").fill_null("served") + pl.lit(" · ") + pl.col("profile")).alias("series")
    )


def throughput_vs_latency(levels: pl.DataFrame) -> alt.Chart:
    """Served load levels: throughput against TTFT p90, one line per server configuration and load profile
    through its levels, the Pareto front (`pareto`: no other level has both lower TTFT p90 and higher throughput)
    ringed. `levels`: one row per configuration and level (`endpoint.levels.level_summaries`)."""
    data = _series(levels.filter(pl.col("ttft_s_p90").is_not_null() & pl.col("throughput_tps").is_not_null()))
    if "pareto" not in data.columns:
        data = data.with_columns(pl.lit(False).alias("pareto"))
    data = in_units(data, "ttft_s_p90", "throughput_tps", "goodput_rps")
    base = alt.Chart(data).encode(
        x=alt.X("ttft_s_p90:Q", title=title("ttft_s_p90")),
        y=alt.Y("throughput_tps:Q", title=title("throughput_tps")),
        color=alt.Color(
            "series:N", title="configuration · load", legend=alt.Legend(orient="bottom", columns=1, labelLimit=0)
        ),
        tooltip=_tooltip("configuration", "profile", "level", "ttft_s_p90", "throughput_tps", "goodput_rps"),
    )
    line = base.mark_line(point=True).encode(order="level:Q")
    front = base.transform_filter("datum.pareto").mark_point(size=220, shape="circle", filled=False, color="black")
    title_text = "Throughput against TTFT p90 per load level (ringed: Pareto front)"
    return (line + front).properties(title=title_text, width=460, height=300)


def ttft_over_time(replay: pl.DataFrame) -> alt.Chart:
    """A replayed trace: each request's TTFT against when it was sent, one colour per server configuration and
    round (failed requests have no TTFT and are left out). `replay`: `endpoint_section.replay_table`."""
    data = replay.with_columns(
        (pl.col("ttft_s") * 1000).round_sig_figs(4).alias("ttft_ms"),
        pl.col("sent_s").round(3),
        (pl.col("configuration").fill_null("served") + pl.lit(" · round ") + pl.col("round").cast(pl.String)).alias(
            "series"
        ),
    )
    base = alt.Chart(data).encode(
        x=alt.X("sent_s:Q", title="sent at (s after the replay started)"),
        color=alt.Color("series:N", title="configuration · round", legend=alt.Legend(orient="bottom", columns=1)),
    )
    good = (
        base.transform_filter("datum.ok")
        .mark_circle(size=30)
        .encode(y=alt.Y("ttft_ms:Q", title="TTFT (ms)"), tooltip=["series", "sent_s", "ttft_ms"])
    )
    return good.properties(title="Trace replay: TTFT of each request over the replay", width=460, height=260)


def goodput_vs_load(levels: pl.DataFrame) -> alt.Chart:
    """Goodput (requests/s meeting every SLO, solid) and completed requests/s (dashed) against the load level,
    one panel per load profile; each level's verdict (meets SLOs, misses them, over-saturated) is its shape."""
    data = _series(levels).with_columns(
        pl.when(pl.col("saturated"))
        .then(pl.lit("over-saturated"))
        .when(pl.col("slo_pass"))
        .then(pl.lit("meets SLOs"))
        .otherwise(pl.lit("misses SLOs"))
        .alias("verdict"),
        pl.col("configuration").fill_null("served"),
    )
    long = data.unpivot(
        index=["configuration", "profile", "level", "verdict"],
        on=["goodput_rps", "throughput_rps"],
        variable_name="measure",
        value_name="requests_per_s",
    ).with_columns(pl.col("measure").replace({"goodput_rps": "goodput", "throughput_rps": "completed"}))
    base = alt.Chart().encode(
        x=alt.X("level:Q", title="load level (concurrency, or offered requests/s)"),
        y=alt.Y("requests_per_s:Q", title="requests/s"),
        color=alt.Color(
            "configuration:N", title="configuration", legend=alt.Legend(orient="bottom", columns=1, labelLimit=0)
        ),
        strokeDash=alt.StrokeDash("measure:N", title="", sort=["goodput", "completed"]),
        tooltip=_tooltip("configuration", "profile", "level", "measure", "requests_per_s", "verdict"),
    )
    line = base.mark_line().encode(detail="configuration:N")
    points = base.mark_point(size=90, filled=True).encode(
        shape=alt.Shape(
            "verdict:N", title="level", scale=alt.Scale(domain=["meets SLOs", "misses SLOs", "over-saturated"])
        )
    )
    return (
        alt.layer(line, points, data=long)
        .properties(width=300, height=220)
        .facet(column=alt.Column("profile:N", title="load profile"))
        .resolve_scale(x="independent")
        .properties(title="Goodput against load (shape: the level's SLO verdict)")
    )
