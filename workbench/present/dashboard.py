"""The tradeoff dashboard: ipywidgets controls driving the chart and a table of the configurations that meet
the targets. It reads finished sweep results only and never starts a run.

Every target is entered in the unit the table shows (TTFT in ms, exact match in %), each run's baseline is one
row (the median over runs), a second sweep can be overlaid on the chart ("compare with"), and an endpoint sweep
shows its load levels with the controls that do not apply to it hidden. The chart is `alt.JupyterChart` in its
offline mode (`offline.enable_widgets`), so it draws with no network.

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
from workbench.present import charts, endpoint_tables, offline, tables
from workbench.results.store import list_sweeps, load_sweep_results

QUALITIES = ("task_accuracy", "perplexity", "kl_mean")
X_AXES = ("ttft_s_p90", "ttft_s", "e2e_s")
Y_AXES = ("throughput_tps", "decode_tps", "throughput_rps")
NONE = "(none)"
TTFT_MS = 1e3


@functools.lru_cache(maxsize=16)
def _rows(sweep: str) -> pl.DataFrame:
    return load_sweep_results(sweep).collect()


@functools.lru_cache(maxsize=16)
def _configs(sweep: str) -> pl.DataFrame:
    return one_baseline(per_variant.configurations(_rows(sweep)))


@functools.lru_cache(maxsize=16)
def _endpoint(sweep: str):
    """The served-endpoint view of an endpoint sweep (`endpoint_section.from_rows`); None for any other sweep."""
    from workbench.present import endpoint_section

    rows = _rows(sweep)
    if rows.is_empty() or set(rows["experiment"].unique()) != {"endpoint"}:
        return None
    return endpoint_section.from_rows(rows, sweep)


@functools.lru_cache(maxsize=16)
def _quality(sweep: str) -> pl.DataFrame | None:
    """The sweep's paired quality comparisons (`analysis.quality_compare`): the front's quality axis and the
    table's "quality kept" column rest on these verdicts, not on point estimates."""
    from workbench.analysis import verdicts

    return verdicts.quality_comparisons(_rows(sweep))


def clear_caches() -> None:
    for cached in (_rows, _configs, _endpoint, _quality):
        cached.cache_clear()


def one_baseline(configs: pl.DataFrame) -> pl.DataFrame:
    """Every run measures its own baseline; shown once, as the median over those runs (`baseline_summary`)."""
    if configs.is_empty() or configs.filter("is_reference").height <= 1:
        return configs
    summary = per_variant.baseline_summary(configs)
    first = configs.filter("is_reference").row(0, named=True)
    row = {**first, **summary, "point_id": f"median of {summary['runs']} runs", "run_id": None}
    merged = pl.DataFrame([{c: row.get(c) for c in configs.columns}], schema=configs.schema, strict=False)
    return pl.concat([merged, configs.filter(~pl.col("is_reference"))], how="vertical_relaxed")


def _options(names) -> list[tuple[str, str]]:
    return [(charts.title(n), n) for n in names]


def floor_label(quality: str) -> str:
    """'quality floor: Task exact match ≥ (%)': the floor's metric, direction and the unit the table shows."""
    name, unit, _ = charts.METRICS[quality]
    bound = "≤" if quality in charts.LOWER_IS_BETTER_QUALITY else "≥"
    return f"quality floor: {name} {bound}" + (f" ({unit})" if unit else "")


def _target_words(slo: dict) -> list[str]:
    """Each target in words and display units: 'TTFT p90 ≤ 1,000 ms'."""
    words = []
    for check in slo_module.checks({}, slo):
        name, unit, factor = charts.METRICS.get(check["metric"], (check["metric"], "", 1.0))
        shown = f"{check['threshold'] * factor:,.4g}" + (f" {unit}" if unit and unit != "%" else unit)
        words.append(f"{name} {'≤' if check['bound'] == 'max' else '≥'} {shown}")
    return words


class Dashboard:
    """Widget state lives in the controls; `refresh` recomputes the chart spec and the table from them."""

    def __init__(self, sweeps: list[str] | None = None):
        names = sweeps if sweeps is not None else [s["sweep"] for s in list_sweeps() if s["done"]]
        if not names:
            raise FileNotFoundError("no sweep with finished points; run `workbench sweep params/smoke.yaml` first")
        style = {"description_width": "initial"}
        self.sweep = widgets.Dropdown(options=names, value=names[0], description="sweep", style=style)
        self.baseline = widgets.Dropdown(options=[NONE, *names], value=NONE, description="compare with", style=style)
        self.quality = widgets.Dropdown(
            options=_options(QUALITIES), value=QUALITIES[0], description="quality", style=style
        )
        self.x_axis = widgets.Dropdown(options=_options(X_AXES), value=X_AXES[0], description="x", style=style)
        self.y_axis = widgets.Dropdown(options=_options(Y_AXES), value=Y_AXES[0], description="y", style=style)
        self.quality_floor = widgets.FloatText(value=0.0, description=floor_label(QUALITIES[0]), style=style)
        self.slo_ttft = widgets.FloatText(value=1000.0, description="SLO: TTFT p90 ≤ (ms)", style=style)
        self.slo_throughput = widgets.FloatText(value=0.0, description="SLO: throughput ≥ (tok/s)", style=style)
        offline.enable_widgets()
        self.chart = alt.JupyterChart(alt.Chart(pl.DataFrame({"x": [0]})).mark_point())
        self.heading = widgets.HTML()
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
        self.quality.observe(self._relabel_floor, names="value")
        for control in controls:
            control.observe(lambda _: self.refresh(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(controls[:5]),
                widgets.HBox(controls[5:]),
                self.chart,
                self.heading,
                self.table,
                self.regressions,
            ]
        )
        self.refresh()

    def _relabel_floor(self, change) -> None:
        self.quality_floor.description = floor_label(change.new)

    def slo(self) -> dict:
        """The targets in stored units (seconds, fractions), from the controls' display units."""
        slo = {"ttft_s_p90_max": self.slo_ttft.value / TTFT_MS, "throughput_tps_min": self.slo_throughput.value}
        quality, floor = self.quality.value, self.quality_floor.value
        factor = charts.METRICS[quality][2]
        if quality not in charts.LOWER_IS_BETTER_QUALITY:
            slo[f"{quality}_min"] = floor / factor
        elif floor > 0:
            slo[f"{quality}_max"] = floor / factor
        return slo

    def _configs(self) -> pl.DataFrame:
        from workbench.analysis.quality_compare import kept_labels

        quality, compared = self.quality.value, _quality(self.sweep.value)
        configs = decisions.with_pareto(_configs(self.sweep.value), quality=quality, quality_compared=compared)
        return kept_labels(configs, compared, quality)

    def meeting_slo(self) -> pl.DataFrame:
        """The configurations that meet the current targets, best throughput first."""
        configs, slo = self._configs(), self.slo()
        keep = [all(c["pass"] for c in slo_module.checks(row, slo)) for row in configs.iter_rows(named=True)]
        return configs.filter(pl.Series(keep, dtype=pl.Boolean)).sort("throughput_tps", descending=True)

    def title(self) -> str:
        targets = ", ".join(_target_words(self.slo()))
        return f"Configurations of {self.sweep.value} with {targets}, best throughput first"

    def slo_table(self):
        """`meeting_slo` as a formatted table (great_tables; names escaped), titled with its targets."""
        return tables.configurations(self.meeting_slo(), quality=self.quality.value).tab_header(title=self.title())

    def why_none(self) -> str:
        """With no configuration left: how many each target removes, so a floor in the wrong unit shows."""
        configs, slo = self._configs(), self.slo()
        words = dict(zip(slo, _target_words(slo)))
        missed = {key: 0 for key in slo}
        for row in configs.iter_rows(named=True):
            for check in slo_module.checks(row, slo):
                missed[check["target"]] += not check["pass"]
        reasons = "; ".join(f"{n} miss {words[key]}" for key, n in missed.items() if n)
        return f"<p><i>None of the {configs.height} configurations: {reasons}.</i></p>"

    def _show(self, *controls, visible: bool) -> None:
        for control in controls:
            control.layout.display = None if visible else "none"

    def _compare_note(self) -> str | None:
        """Why nothing is compared, or None when `compare with` names another sweep of the same kind."""
        other = self.baseline.value
        if other == NONE:
            return ""
        if other == self.sweep.value:
            return f"<p><i>Comparing {other} with itself: pick another sweep under “compare with”.</i></p>"
        if (_endpoint(other) is None) != (_endpoint(self.sweep.value) is None):
            return f"<p><i>{other} and {self.sweep.value} are different kinds of sweep (endpoint and not).</i></p>"
        return None

    def refresh_endpoint(self, section) -> None:
        """An endpoint sweep: throughput against TTFT p90 per configuration and level (a compared endpoint sweep's
        levels on the same chart); the table lists the levels that met their run's SLOs and the targets above."""
        self._show(self.quality, self.quality_floor, self.x_axis, self.y_axis, visible=False)
        note = self._compare_note()
        levels = section.levels
        if note is None:
            other = _endpoint(self.baseline.value).levels
            name = pl.col("configuration").fill_null("served")
            levels = pl.concat(
                [
                    levels.with_columns(configuration=pl.lit(f"{self.sweep.value}: ") + name),
                    other.with_columns(configuration=pl.lit(f"{self.baseline.value}: ") + name),
                ],
                how="diagonal_relaxed",
            )
        self.chart.chart = charts.throughput_vs_latency(levels)
        ttft_s, tps = self.slo_ttft.value / TTFT_MS, self.slo_throughput.value
        meeting = section.levels.filter(
            pl.col("slo_pass").fill_null(False)
            & ~pl.col("saturated").fill_null(False)
            & (pl.col("ttft_s_p90") <= ttft_s)
            & (pl.col("throughput_tps") >= tps)
        )
        targets = ", ".join(_target_words({"ttft_s_p90_max": ttft_s, "throughput_tps_min": tps}))
        self.heading.value = (
            f"<b>Load levels of {section.sweep} that met their run's own SLOs and {targets}, "
            "one group per server configuration</b>"
        )
        if meeting.height:
            shown = endpoint_tables.endpoint_levels(dataclasses.replace(section, levels=meeting))
            self.table.value = tables.html(shown.tab_stub(groupname_col="Configuration"))
        else:
            self.table.value = f"<p><i>None of the {section.levels.height} load levels.</i></p>"
        self.regressions.value = note or ""

    def refresh(self) -> None:
        section = _endpoint(self.sweep.value)
        if section is not None:
            self.refresh_endpoint(section)
            return
        self._show(self.quality, self.quality_floor, self.x_axis, self.y_axis, visible=True)
        configs = self._configs()
        x, y = self.x_axis.value, self.y_axis.value
        chart = charts.tradeoff_scatter(
            configs,
            quality=self.quality.value,
            slo_ttft_s=self.slo_ttft.value / TTFT_MS,
            slo_throughput_tps=self.slo_throughput.value or None,
            x=x,
            y=y,
        )
        note = self._compare_note()
        if note is None:
            chart = charts.overlay(chart, _configs(self.baseline.value), name=self.baseline.value, x=x, y=y)
        self.chart.chart = chart
        meeting = self.meeting_slo()
        self.heading.value = "" if meeting.height else f"<b>{self.title()}</b>"  # a table carries its own title
        self.table.value = tables.html(self.slo_table()) if meeting.height else self.why_none()
        if note is None:
            found = gates.regressions(_rows(self.sweep.value), _rows(self.baseline.value))
            heading = f"Regressions of {self.sweep.value} against {self.baseline.value} (> 10 % worse)"
            self.regressions.value = tables.html(tables.regressions(found, tolerance=0.10).tab_header(title=heading))
        else:
            self.regressions.value = note
