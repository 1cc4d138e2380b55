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


def endpoint_fidelity(section):
    """Fidelity probes per configuration and level (`endpoint.probes`): served greedy tokens against in process."""
    rows = []
    levels = section.levels if section is not None else pl.DataFrame()
    for r in levels.iter_rows(named=True) if "identical_share" in levels.columns else []:
        if r.get("probes") is None:
            continue
        first = r["first_divergence_p50"]
        rows.append(
            {
                "Configuration": r["configuration"],
                "Load": f"{r['profile']} {r['level']:g}",
                "Probes (ok)": f"{r['probes']} ({r['probes_ok']})",
                "Identical to in process": "n/a" if r["identical_share"] is None else f"{r['identical_share']:.0%}",
                "First divergence p50": "none diverged" if first is None else f"token {first:g}",
                "KL top-k (lower bound)": "n/a" if r["probe_kl_mean"] is None else f"{r['probe_kl_mean']:.2e}",
                "Measured requests overlapped": f"{r['probe_overlap_mean']:.1f}",
            }
        )
    note = (
        "Probes: greedy fixed-length requests sent among the measured ones (never in their latency figures), "
        "against their in-process continuation by the same weights in the same dtype. First divergence: median "
        "position over the probes that diverged. KL: in process ‖ served over the served top-k tokens plus the "
        "rest, a lower bound of the full KL."
    )
    return table(pl.DataFrame(rows), empty="No fidelity probes (`probe_share` in the endpoint params).", note=note)
