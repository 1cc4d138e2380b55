"""Stakeholder tables: formatted HTML (great_tables) with human labels and units, changes written as
"+23% (95% CI +10…+36%)". Every cell is text that great_tables escapes, so a variant or sweep name holding
HTML shows as text, never as a live tag. Presentation only: the numbers come from `workbench.analysis.decisions`.
"""

from __future__ import annotations

import html as _html
import json
import math

import polars as pl

from workbench.present.charts import METRICS, title

MAX_ROWS = 20


def fmt_pct(value, digits: int | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    digits = digits if digits is not None else (1 if abs(value) < 10 else 0)
    return f"{value:+.{digits}f}%"


def fmt_change(change_pct, ci_low_pct=None, ci_high_pct=None) -> str:
    """'+23% (95% CI +10…+36%)'; without an interval (fewer than two trials a side) it says so."""
    if change_pct is None or not math.isfinite(change_pct):
        return "n/a"
    if ci_low_pct is None or ci_high_pct is None or not (math.isfinite(ci_low_pct) and math.isfinite(ci_high_pct)):
        return f"{fmt_pct(change_pct)} (no interval: fewer than 2 rounds)"
    digits = 1 if max(abs(change_pct), abs(ci_low_pct), abs(ci_high_pct)) < 10 else 0
    low, high = fmt_pct(ci_low_pct, digits), fmt_pct(ci_high_pct, digits)
    return f"{fmt_pct(change_pct, digits)} (95% CI {low}…{high})"


def fmt_value(metric: str, value) -> str:
    """A value in its display unit: '12.3 ms', '54.2 %', '1,204 generated tok/s'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not measured"
    label, unit, factor = METRICS.get(metric, (metric, "", 1.0))
    shown = value * factor
    text = f"{shown:,.0f}" if abs(shown) >= 1000 else f"{shown:.3g}"
    return f"{text} {unit}".strip()


def fmt_ms(seconds) -> str:
    """A time stored in seconds, shown in milliseconds as every latency is."""
    return fmt_value("ttft_s", seconds)


def fmt_changes(changes_json) -> str:
    """The knobs a variant changed, 'bits=4, group_size=64'; 'not declared' for older sweeps."""
    if changes_json is None:
        return "not declared"
    changes = json.loads(changes_json)
    return ", ".join(f"{k}={v}" for k, v in sorted(changes.items())) or "none"


def table(frame: pl.DataFrame, *, heading: str | None = None, note: str | None = None, empty: str = "none"):
    """A great_tables table of string cells (columns already named for people); `empty` when no rows."""
    from great_tables import GT

    blank = frame.is_empty()
    if blank:
        frame = pl.DataFrame({"": [empty]})
    shown = frame.head(MAX_ROWS)
    if frame.height > MAX_ROWS:
        extra = f"{frame.height - MAX_ROWS} more rows in the report's summary.json."
        note = f"{note} {extra}" if note else extra
    gt = GT(shown.with_columns(pl.all().cast(pl.String).fill_null("—")))
    if heading:
        gt = gt.tab_header(title=heading)
    if note:
        gt = gt.tab_source_note(note)
    return gt.tab_options(
        table_font_size="14px", column_labels_font_weight="bold", table_margin_left="0", column_labels_hidden=blank
    )


def html(gt) -> str:
    return gt.as_raw_html()


def _label(row) -> str:
    return f"{row['variant']} @ {row['point_id']}"


def slo(rows: list[dict]):
    """From `gates.slo_rows`."""
    out = []
    for r in rows:
        bound = "≤" if r["bound"] == "max" else "≥"
        out.append(
            {
                "Configuration": r["configuration"],
                "Target": f"{METRICS[r['metric']][0]} {bound} {fmt_value(r['metric'], r['threshold'])}",
                "Measured": fmt_value(r["metric"], r["value"]),
                "Meets it": "yes" if r["pass"] else "NO",
            }
        )
    return table(pl.DataFrame(out))


def regressions(frame: pl.DataFrame, *, tolerance: float):
    rows = [
        {
            "Configuration": f"{r['variant']} @ {r['point_id']}" if r["point_id"] else r["variant"],
            "Metric": title(r["metric"]),
            "Previous": fmt_value(r["metric"], r["previous"]),
            "Now": fmt_value(r["metric"], r["current"]),
            "Change": fmt_change(r["change_pct"], r["ci_low_pct"], r["ci_high_pct"])
            if r["interval"]
            else fmt_pct(r["change_pct"]),
        }
        for r in frame.filter("regression").iter_rows(named=True)
    ]
    matched = frame["matched_by"][0] if frame.height else "point id and variant"
    note = (
        f"{frame.height} metric comparisons, configurations matched by {matched}; a regression is worse by more "
        f"than {tolerance:.0%} and, where both sweeps have 2+ trials, beyond its 95% interval."
    )
    return table(pl.DataFrame(rows), empty="No regression.", note=note)


def risks(frame: pl.DataFrame):
    return table(frame.rename(str.capitalize), empty="No risk found in the measurements.")


def configurations(frame: pl.DataFrame, *, quality: str, columns=("ttft_s_p90", "throughput_tps", "decode_tps")):
    """One row per configuration, values in display units (the dashboard's table)."""
    metrics = [*columns, quality]
    rows = [
        {
            "Configuration": _label(r),
            "Optimisation": r["family"],
            **{METRICS[m][0]: fmt_value(m, r.get(m)) for m in metrics},
            "Pareto-optimal": "yes" if r.get("pareto") else "",
        }
        for r in frame.iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows))


def overview(report):
    """The top of the report: what was measured, the verdicts, the recommendations and the warnings (escaped HTML)."""
    from IPython.display import HTML

    a, esc = report.analysis, _html.escape
    runs = a.configs["run_id"].n_unique() if a.configs.height else 0
    objective = METRICS[a.objective][0].lower()
    from workbench.analysis.verdicts import summary_line

    verdicts = [
        f"<li><b>{esc(r['variant'])} @ {esc(r['point_id'])}</b> ({esc(r['family'])}): {objective} "
        f"{esc(fmt_change(r['change_pct'], r['ci_low_pct'], r['ci_high_pct']))}, {esc(r['label'])}</li>"
        for r in a.recommended.iter_rows(named=True)
    ]
    verdict = (
        f"<p>Recommended:</p><ul>{''.join(verdicts)}</ul>"
        if verdicts
        else "<p><b>No configuration is recommended</b>: none is <i>better</i> on the objective and meets the SLOs.</p>"
    )
    warnings = "".join(f"<li>{esc(w)}</li>" for w in a.warnings)
    return HTML(
        f"<p>Sweep <b>{esc(report.sweep)}</b>: {report.points} points ({report.failed} failed), "
        f"{a.configs.height} configurations in {runs} runs.</p>"
        f"<p>Verdicts: {esc(summary_line(a.compared))}.</p>{verdict}"
        + (
            f'<div style="background:#fff4ce;padding:4px 12px"><b>Read with care</b><ul>{warnings}</ul></div>'
            if warnings
            else ""
        )
    )


def baseline_overview(report):
    """The baseline's measured figures (median over its runs), hardware and versions."""
    from IPython.display import HTML

    from workbench.analysis import per_variant

    base, env, esc = per_variant.baseline_summary(report.analysis.configs), report.env, _html.escape
    if not base["runs"]:
        return HTML("<p>No baseline rows in this sweep.</p>")

    def v(metric):
        return esc(fmt_value(metric, base.get(metric)))

    memory = (env.get("memory_bytes") or 0) / 2**30
    items = [
        f"<b>throughput</b> {v('throughput_tps')}, {v('throughput_rps')}",
        f"<b>TTFT</b> p50 {v('ttft_s')}, p90 {v('ttft_s_p90')}; <b>end-to-end</b> p50 {v('e2e_s')}; "
        f"<b>decode</b> {v('decode_tps')}",
        f"<b>quality</b>: perplexity {v('perplexity')}, task exact match {v('task_accuracy')}",
        f"<b>memory</b>: peak {v('peak_mem_bytes')}",
        f"<b>hardware</b>: {esc(str(env.get('cpu', '?')))}, {esc(str(env.get('cores', '?')))} cores, {memory:.0f} GiB, "
        f"backend <b>{esc(str(env.get('backend', '?')))}</b>, BLAS {esc(str(env.get('blas', '?')))}",
        f"<b>versions</b>: mlx {esc(str(env.get('mlx', '?')))}, mlx-lm {esc(str(env.get('mlx_lm', '?')))}, "
        f"Python {esc(str(env.get('python', '?')))}, git {esc(str(env.get('git_sha') or '?')[:10])}",
        f"medians over the baseline's {base['runs']} runs",
    ]
    return HTML("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")


def regressions_section(report):
    from IPython.display import HTML

    if report.analysis.regressions is None:
        return HTML("<p>No earlier sweep given (<code>--baseline SWEEP</code>).</p>")
    heading = f"Against sweep {report.baseline_sweep}"
    return regressions(report.analysis.regressions, tolerance=report.tolerance).tab_header(title=heading)


def _ms(value) -> str:
    return fmt_value("ttft_s", value)
