"""Stakeholder tables: formatted HTML (great_tables) with human labels and units, changes written as
"+23% (95% CI +10…+36%)". Every cell is text that great_tables escapes, so a variant or sweep name holding
HTML shows as text, never as a live tag. Presentation only: the numbers come from `workbench.analysis.decisions`.
"""

from __future__ import annotations

import json
import math

import polars as pl

from workbench.present import header
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
    """A configuration's human name (`names`), its point id in an "id" column of its own (`_id`)."""
    return header.display_name(row)


def _id(row) -> str:
    """The point id, shortened to 8 characters when it is one (a pooled row's "median of N runs" stays whole)."""
    text = str(row.get("point_id") or "")
    return text[:8] if len(text) == 12 and all(c in "0123456789abcdef" for c in text) else text


def slo(rows: list[dict], sources: dict | None = None):
    """From `gates.slo_rows`; `sources` names where each target came from (the report's default or `--slo`)."""
    out = []
    for r in rows:
        bound = "≤" if r["bound"] == "max" else "≥"
        out.append(
            {
                "Configuration": r["configuration"],
                "Target": f"{METRICS[r['metric']][0]} {bound} {fmt_value(r['metric'], r['threshold'])}",
                "Source": (sources or {}).get(r["target"], "report default"),
                "Measured": fmt_value(r["metric"], r["value"]),
                "Meets it": "yes" if r["pass"] else "NO",
            }
        )
    return table(pl.DataFrame(out))


def regressions(frame: pl.DataFrame, *, tolerance: float, configs: pl.DataFrame | None = None):
    """Regressions against an earlier sweep; `configs` (this sweep's) names each configuration."""
    known = {}
    for c in [] if configs is None else configs.iter_rows(named=True):
        known.setdefault((c["point_id"], c["variant"]), _label(c))
        known.setdefault((None, c["variant"]), _label(c))
    rows = [
        {
            "Configuration": known.get((r.get("point_id"), r["variant"]), r["variant"]),
            "id": _id(r),
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
            "id": _id(r),
            "Optimisation": r["family"],
            **{METRICS[m][0]: fmt_value(m, r.get(m)) for m in metrics},
            **(
                {"Quality vs baseline (95% CI)": r.get("quality_kept") or "—"}
                if "quality_kept" in frame.columns
                else {}
            ),
            "Pareto-optimal": "yes" if r.get("pareto") else "",
        }
        for r in frame.iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows))


def regressions_section(report):
    from IPython.display import HTML

    if report.analysis.regressions is None:
        return HTML("<p>No earlier sweep given (<code>--baseline SWEEP</code>).</p>")
    heading = f"Against sweep {report.baseline_sweep}"
    analysis = report.analysis
    shown = regressions(analysis.regressions, tolerance=report.tolerance, configs=analysis.configs)
    for line in getattr(report, "baseline_left_out", None) or []:
        shown = shown.tab_source_note(f"Left out, not comparable: {line}.")
    return shown.tab_header(title=heading)
