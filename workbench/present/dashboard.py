"""The tradeoff dashboard: ipywidgets controls driving the charts and a table of configurations that meet
the SLOs. It reads finished sweep results only and never starts a run.

    from workbench.present.dashboard import Dashboard
    Dashboard().widget          # in notebooks/90_dashboard.ipynb
"""

from __future__ import annotations

import dataclasses
import functools

import altair as alt
import ipywidgets as widgets
import polars as pl

from workbench import slo as slo_module
from workbench.analysis import decisions, gates, per_variant
from workbench.present import charts, endpoint_tables, tables
from workbench.results.store import list_sweeps, load_sweep_results

QUALITIES = ("task_accuracy", "perplexity", "kl_mean")
X_AXES = ("ttft_s_p90", "ttft_s", "e2e_s")
Y_AXES = ("throughput_tps", "decode_tps", "throughput_rps")


@functools.lru_cache(maxsize=16)
def _rows(sweep: str) -> pl.DataFrame:
    return load_sweep_results(sweep).collect()


@functools.lru_cache(maxsize=16)
def _configs(sweep: str) -> pl.DataFrame:
    return per_variant.configurations(_rows(sweep))


@functools.lru_cache(maxsize=16)
def _endpoint(sweep: str):
    """The served-endpoint view of an endpoint sweep (`endpoint_section.from_rows`); None for any other sweep."""
    from workbench.present import endpoint_section

    rows = _rows(sweep)
    if rows.is_empty() or set(rows["experiment"].unique()) != {"endpoint"}:
        return None
    return endpoint_section.from_rows(rows, sweep)


def _options(names) -> list[tuple[str, str]]:
    return [(charts.title(n), n) for n in names]


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
        self.quality = widgets.Dropdown(
            options=_options(QUALITIES), value=QUALITIES[0], description="quality", style=style
        )
        self.x_axis = widgets.Dropdown(options=_options(X_AXES), value=X_AXES[0], description="x", style=style)
        self.y_axis = widgets.Dropdown(options=_options(Y_AXES), value=Y_AXES[0], description="y", style=style)
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
        """The configurations that meet the current SLOs, best throughput first."""
        configs = decisions.with_pareto(_configs(self.sweep.value), quality=self.quality.value)
        slo = self.slo()
        keep = [all(c["pass"] for c in slo_module.checks(row, slo)) for row in configs.iter_rows(named=True)]
        return configs.filter(pl.Series(keep, dtype=pl.Boolean)).sort("throughput_tps", descending=True)

    def slo_table(self):
        """`meeting_slo` as a formatted table (great_tables; names escaped)."""
        return tables.configurations(self.meeting_slo(), quality=self.quality.value)

    def refresh_endpoint(self, section) -> None:
        """An endpoint sweep: throughput against TTFT p90 per configuration and level; the table lists the levels
        within the TTFT p90 and throughput SLOs."""
        self.chart.chart = charts.throughput_vs_latency(section.levels)
        levels = section.levels.filter(
            (pl.col("ttft_s_p90") <= self.slo_ttft.value) & (pl.col("throughput_tps") >= self.slo_throughput.value)
        )
        shown = dataclasses.replace(section, levels=levels)
        self.table.value = (
            tables.html(endpoint_tables.endpoint_levels(shown)) if levels.height else "<p><i>none</i></p>"
        )
        self.regressions.value = ""

    def refresh(self) -> None:
        section = _endpoint(self.sweep.value)
        if section is not None:
            self.refresh_endpoint(section)
            return
        configs = decisions.with_pareto(_configs(self.sweep.value), quality=self.quality.value)
        self.chart.chart = charts.tradeoff_scatter(
            configs,
            quality=self.quality.value,
            slo_ttft_s=self.slo_ttft.value,
            slo_throughput_tps=self.slo_throughput.value or None,
            x=self.x_axis.value,
            y=self.y_axis.value,
        )
        meeting = self.meeting_slo()
        self.table.value = tables.html(self.slo_table()) if meeting.height else "<p><i>none</i></p>"
        if self.baseline.value != "(none)":
            found = gates.regressions(_rows(self.sweep.value), _rows(self.baseline.value))
            heading = f"Regressions against {self.baseline.value} (> 10 % worse)"
            self.regressions.value = tables.html(tables.regressions(found, tolerance=0.10).tab_header(title=heading))
        else:
            self.regressions.value = ""
