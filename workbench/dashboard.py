"""The tradeoff dashboard: ipywidgets controls driving the charts and a table of configurations that meet
the SLOs. It reads finished sweep results only and never starts a run.

    from workbench.dashboard import Dashboard
    Dashboard().widget          # in notebooks/90_dashboard.ipynb
"""

from __future__ import annotations

import functools

import altair as alt
import ipywidgets as widgets
import polars as pl

from workbench import analysis, charts
from workbench.sweep import list_sweeps, load_sweep_results

QUALITIES = ("task_accuracy", "perplexity", "kl_mean")
X_AXES = ("ttft_s_p90", "ttft_s", "e2e_s")
Y_AXES = ("throughput_tps", "decode_tps", "throughput_rps")


@functools.lru_cache(maxsize=16)
def _configs(sweep: str) -> pl.DataFrame:
    return analysis.configurations(load_sweep_results(sweep).collect())


class Dashboard:
    """Widget state lives in the controls; `refresh` recomputes the chart spec and the SLO table from them."""

    def __init__(self, sweeps: list[str] | None = None):
        names = sweeps if sweeps is not None else [s["sweep"] for s in list_sweeps() if s["done"]]
        if not names:
            raise FileNotFoundError("no sweep with finished points; run `workbench sweep params/smoke.yaml` first")
        style = {"description_width": "initial"}
        self.sweep = widgets.Dropdown(options=names, value=names[0], description="sweep", style=style)
        self.baseline = widgets.Dropdown(
            options=["(none)", *names], value="(none)", description="compare with", style=style
        )
        self.quality = widgets.Dropdown(options=QUALITIES, value=QUALITIES[0], description="quality", style=style)
        self.x_axis = widgets.Dropdown(options=X_AXES, value=X_AXES[0], description="x", style=style)
        self.y_axis = widgets.Dropdown(options=Y_AXES, value=Y_AXES[0], description="y", style=style)
        self.quality_floor = widgets.FloatText(
            value=0.0, description="quality floor (accuracy ≥ / ppl, KL ≤)", style=style
        )
        self.slo_ttft = widgets.FloatText(value=1.0, description="SLO: TTFT p90 ≤ (s)", style=style)
        self.slo_throughput = widgets.FloatText(value=0.0, description="SLO: throughput ≥ (tok/s)", style=style)
        self.chart = alt.JupyterChart(alt.Chart(pl.DataFrame({"x": [0]})).mark_point())
        self.table = widgets.HTML()
        self.regressions = widgets.HTML()
        controls = [
            self.sweep,
            self.baseline,
            self.quality,
            self.x_axis,
            self.y_axis,
            self.quality_floor,
            self.slo_ttft,
            self.slo_throughput,
        ]
        for control in controls:
            control.observe(lambda _: self.refresh(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(controls[:5]),
                widgets.HBox(controls[5:]),
                self.chart,
                widgets.HTML("<b>Configurations meeting the SLOs</b>"),
                self.table,
                self.regressions,
            ]
        )
        self.refresh()

    def slo(self) -> dict:
        slo = {"ttft_s_p90_max": self.slo_ttft.value, "throughput_tps_min": self.slo_throughput.value}
        floor = self.quality_floor.value
        if self.quality.value == "task_accuracy":
            slo["task_accuracy_min"] = floor
        elif floor > 0:
            slo[f"{self.quality.value}_max"] = floor
        return slo

    def meeting_slo(self) -> pl.DataFrame:
        configs = analysis.with_pareto(_configs(self.sweep.value), quality=self.quality.value)
        slo = self.slo()
        keep = [all(c["pass"] for c in analysis.slo_checks(row, slo)) for row in configs.to_dicts()]
        return (
            configs.filter(pl.Series(keep))
            .select(
                "variant",
                "family",
                "point_id",
                "ttft_s_p90",
                "throughput_tps",
                "decode_tps",
                self.quality.value,
                "pareto",
            )
            .sort("throughput_tps", descending=True)
        )

    def refresh(self) -> None:
        configs = analysis.with_pareto(_configs(self.sweep.value), quality=self.quality.value)
        self.chart.chart = charts.tradeoff_scatter(
            configs,
            quality=self.quality.value,
            slo_ttft_s=self.slo_ttft.value,
            slo_throughput_tps=self.slo_throughput.value or None,
            x=self.x_axis.value,
            y=self.y_axis.value,
        )
        self.table.value = _html_table(self.meeting_slo())
        if self.baseline.value != "(none)":
            found = analysis.regressions(configs, _configs(self.baseline.value))
            flagged = found.filter(pl.col("regression")) if found.height else found
            self.regressions.value = "<b>Regressions (> 10 % worse)</b>" + _html_table(flagged)
        else:
            self.regressions.value = ""


def _html_table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p><i>none</i></p>"
    head = "".join(f"<th>{c}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
