"""Stakeholder tables: formatted HTML (great_tables) with human labels and units, changes written as
"+23% (95% CI +10…+36%)". Every cell is text that great_tables escapes, so a variant or sweep name holding
HTML shows as text, never as a live tag. Presentation only: the numbers come from `workbench.analysis.decisions`.
"""

from __future__ import annotations

import html as _html
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
        return f"{fmt_pct(change_pct)} (no interval: fewer than 2 trials)"
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
    return str(row.get("point_id") or "")[:8]


def noise_floor(analysis):
    rows = [
        {
            "Metric": title(metric),
            "Noise floor (median over runs)": fmt_pct(floor["median_pct"]).lstrip("+"),
            "Largest run's floor": fmt_pct(floor["max_pct"]).lstrip("+"),
            "Runs with ≥ 2 baseline rounds": str(floor["runs"]),
            "Largest A/A copy (baseline settings as a variant)": fmt_pct(floor.get("aa_copy_max_pct")).lstrip("+")
            if floor.get("aa_copy_max_pct") is not None
            else "none measured",
        }
        for metric, floor in analysis.noise_floor.items()
    ]
    return table(
        pl.DataFrame(rows),
        note="A/A: each run's baseline, even rounds against odd rounds, and any point with the baseline's settings "
        "measured as a variant. A change counts only when its 95% interval excludes zero and it is larger than the "
        "largest of its run's floor, the median floor and the largest A/A-copy change.",
    )


def recommendations(analysis):
    q = analysis.quality
    rows = [
        {
            "Configuration": _label(r),
            "id": _id(r),
            "Optimisation": r["family"],
            "Changed": fmt_changes(r["changes"]),
            f"{METRICS[analysis.objective][0]} vs baseline": fmt_change(
                r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]
            ),
            METRICS["ttft_s_p90"][0]: fmt_value("ttft_s_p90", r["ttft_s_p90"]),
            METRICS[q][0]: fmt_value(q, r[q]),
            "Quality": r["quality_basis"],
        }
        for r in analysis.recommended.iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows), empty="No configuration is recommended: none has a significant gain.")


def not_recommended(analysis):
    rows = [
        {
            "Configuration": _label(r),
            "id": _id(r),
            "Optimisation": r["family"],
            f"{METRICS[analysis.objective][0]} vs baseline": fmt_change(
                r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]
            ),
            "Why not recommended": r["status"],
        }
        for r in analysis.candidates.filter(pl.col("status") != "recommended").iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows), heading="Pareto-optimal, not recommended")


def aa_checks(analysis):
    rows = [
        {
            "A/A copy of the baseline": _label(r),
            "id": _id(r),
            "Metric": title(r["metric"]),
            "Change vs baseline": fmt_change(r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]),
            "Verdict": r["verdict"],
        }
        for r in analysis.aa_checks.iter_rows(named=True)
    ]
    return table(
        pl.DataFrame(rows),
        empty="No A/A copy of the baseline was measured as a variant.",
        note="Expected: no significant difference. Anything else means the noise floor is underestimated.",
    )


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
            "Pareto-optimal": "yes" if r.get("pareto") else "",
        }
        for r in frame.iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows))


def overview(report):
    """The top of the report: what was measured, the noise floor, the verdict and the warnings (escaped HTML)."""
    from IPython.display import HTML

    a, esc = report.analysis, _html.escape
    runs = a.configs["run_id"].n_unique() if a.configs.height else 0
    objective = METRICS[a.objective][0].lower()
    floor = a.noise_floor[a.objective]
    if floor["median_pct"] is None:
        floor_text = (
            "<b>unknown</b> (no run measured its baseline in two or more rounds): nothing is called significant"
        )
    else:
        floor_text = (
            f"<b>{fmt_pct(floor['median_pct']).lstrip('+')}</b> of {objective} (median over {floor['runs']} runs; "
            f"largest {fmt_pct(floor['max_pct']).lstrip('+')}"
            + (
                f"; largest A/A copy {fmt_pct(floor['aa_copy_max_pct']).lstrip('+')})"
                if floor.get("aa_copy_max_pct") is not None
                else ")"
            )
        )
    verdicts = [
        f"<li><b>{esc(_label(r))}</b> <code>{esc(_id(r))}</code> ({esc(r['family'])}): {objective} "
        f"{esc(fmt_change(r['change_pct'], r['ci_low_pct'], r['ci_high_pct']))}</li>"
        for r in a.recommended.iter_rows(named=True)
    ]
    verdict = f"<p>Recommended:</p><ul>{''.join(verdicts)}</ul>" if verdicts else header.nothing_recommended(a)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in a.warnings)
    return HTML(
        f"<p>Sweep <b>{esc(report.sweep)}</b>: {report.points} points ({report.failed} failed), "
        f"{a.configs.height} configurations in {runs} runs.</p>"
        f"<p>Noise floor (A/A): {floor_text}.</p>{verdict}"
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
    analysis = report.analysis
    shown = regressions(analysis.regressions, tolerance=report.tolerance, configs=analysis.configs)
    for line in getattr(report, "baseline_left_out", None) or []:
        shown = shown.tab_source_note(f"Left out, not comparable: {line}.")
    return shown.tab_header(title=heading)


NO_ENDPOINT = "No endpoint sweep in this report (`workbench report SWEEP --endpoint ENDPOINT_SWEEP`)."


def _ms(value) -> str:
    return fmt_value("ttft_s", value)


def endpoint_levels(section, *, slo_source: str | None = None):
    """GuideLLM's console summary as a table, from `endpoint_section.EndpointSection.levels`: one row per
    configuration and load level, request rate and latencies (median / p90) first, then throughput, goodput,
    errors and whether the level met the endpoint sweep's own SLO."""
    rows = []
    for r in [] if section is None else section.levels.iter_rows(named=True):
        verdict = "over-saturated" if r["saturated"] else ("meets SLOs" if r["slo_pass"] else "misses SLOs")
        load = r["profile"] if r["profile"] in ("synchronous", "throughput") else f"{r['profile']} {r['level']:g}"
        rows.append(
            {
                "Configuration": r["configuration"],
                "id": str(r.get("point_id") or "")[:8],
                "Load": load,
                "Requests/s": f"{r['throughput_rps']:.3g}" if r.get("throughput_rps") is not None else "n/a",
                "TTFT p50 / p90": f"{_ms(r['ttft_s'])} / {_ms(r['ttft_s_p90'])}",
                "ITL p50": _ms(r.get("itl_s_p50")) if "itl_s_p50" in r else "n/a",
                "TPOT p50": _ms(r["tpot_s"]),
                "E2E p50": _ms(r.get("e2e_s")) if "e2e_s" in r else "n/a",
                "Output tok/s": fmt_value("throughput_tps", r["throughput_tps"]).removesuffix(" generated tok/s"),
                "Goodput": f"{r['goodput_rps']:.3g} req/s" if r["goodput_rps"] is not None else "n/a",
                "Errors": f"{100 * r['error_rate']:.1f}%" + (f" ({r['top_error']})" if r["top_error"] else ""),
                "SLOs": verdict,
            }
        )
    note = "Goodput: requests per second that succeeded and met every per-request SLO, over the level's window."
    if slo_source:
        note += f" SLO: the endpoint sweep's own ({slo_source}), not the report's default."
    return table(pl.DataFrame(rows), heading="Load levels", empty=NO_ENDPOINT, note=note)


def endpoint_saturation(section):
    rows = [
        {
            "Configuration": r["configuration"],
            "Load profile": r["profile"],
            "Highest level meeting the SLOs": "none" if r["best_level"] is None else f"{r['best_level']:g}",
            "First level missing them": "none measured"
            if r["first_failing_level"] is None
            else f"{r['first_failing_level']:g}",
            "Best goodput": f"{r['best_goodput_rps']:.3g} req/s",
            "Over-saturated": "yes" if r["over_saturated"] else "no",
        }
        for r in ([] if section is None else section.saturation.iter_rows(named=True))
    ]
    return table(pl.DataFrame(rows), empty=NO_ENDPOINT)


def endpoint_gap(section):
    rows = [
        {
            "Configuration": r["configuration"],
            "id": r.get("id") or "",
            "Served at": r["variant"],
            "Metric": title(r["metric"]),
            "In process": fmt_value(r["metric"], r["baseline_mean"]),
            "Served": fmt_value(r["metric"], r["mean"]),
            "Change": fmt_change(r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]),
            "Verdict": r["verdict"],
        }
        for r in ([] if section is None else section.gap.iter_rows(named=True))
    ]
    note = "The same model and prompts, one request at a time in process against the server's lowest load level."
    return table(pl.DataFrame(rows), empty=NO_ENDPOINT, note=note)


def endpoint_cold(section):
    rows = [
        {
            "Configuration": r["configuration"],
            "id": r.get("id") or "",
            "Where": r["side"],
            "Launch to ready": f"{r['startup_s']:.2f} s" if r["startup_s"] is not None else "n/a",
            "First request TTFT (cold)": _ms(r["cold_ttft_s"]),
            "TTFT p50 warm": _ms(r["warm_ttft_s"]),
            "Cold / warm": f"{r['cold_over_warm']:.1f}×" if r["cold_over_warm"] is not None else "n/a",
        }
        for r in ([] if section is None else section.cold.iter_rows(named=True))
    ]
    note = "Cold: the first request after the model loaded, before any warm-up request."
    return table(pl.DataFrame(rows), empty=NO_ENDPOINT, note=note)
