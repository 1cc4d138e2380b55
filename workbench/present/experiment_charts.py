"""Each experiment's own chart: a pure `(summary, rows) -> alt.Chart`, or throughput per variant by default.

Experiments measure; the charts of what they measured live here, in the presentation layer, keyed by the
experiment's name (`chart(name, frame)` is what `notebooks/10_experiment.ipynb` shows). altair is imported only
when a chart is drawn: a sweep's points pass `enabled=False` and skip its 0.7 s import (`chart` turns on the
offline renderer when it draws, docs/notebooks.md).
"""

from __future__ import annotations

import polars as pl

from workbench.endpoint.levels import level_summaries
from workbench.experiments.speculative import acceptance_table


def batching_chart(summary: pl.DataFrame, frame: pl.DataFrame):
    from workbench.present import charts

    data = summary.with_columns(
        pl.format('{{"batch_size": {}}}', pl.col("batch_size").fill_null(1)).alias("params"),
        pl.col("family").fill_null("unknown"),
    )
    return charts.batch_scaling(data)


def speculative_chart(summary: pl.DataFrame, frame: pl.DataFrame):
    from workbench.present import charts

    return charts.acceptance_by_position(acceptance_table(frame))


def endpoint_chart(summary: pl.DataFrame, frame: pl.DataFrame):
    import altair as alt

    from workbench.present import charts

    levels = level_summaries(frame)
    return alt.vconcat(charts.throughput_vs_latency(levels), charts.goodput_vs_load(levels))


CHARTS = {"batching": batching_chart, "speculative": speculative_chart, "endpoint": endpoint_chart}


def chart(name: str, frame: pl.DataFrame, *, enabled: bool = True):
    """The experiment's own chart, or throughput per variant against the baseline (None when not `enabled`)."""
    if not enabled:
        return None
    from workbench.analysis import run_summary
    from workbench.present import charts, offline

    offline.enable()
    summary = pl.DataFrame(run_summary.variant_summaries(name, frame), strict=False)
    if name in CHARTS:
        return CHARTS[name](summary, frame)
    return charts.variant_bars(summary, "throughput_tps", "Generated tokens per second")
