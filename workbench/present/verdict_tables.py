"""The report's verdict tables: every configuration's headline changes with their intervals and verdicts, the
recommendations with their costs, the Pareto-optimal ones not recommended and why, the A/A checks, and the
resolution each point reached. Presentation only: the numbers come from `analysis.verdicts` and `decisions`.

A verdict is always printed with its resolution: "better", "worse", "equivalent (within ±5%)" or
"inconclusive (±18%)" (docs/metrics.md, "How to read a verdict").
"""

from __future__ import annotations

import math

import polars as pl

from workbench import metrics
from workbench.analysis import verdict_risks
from workbench.analysis.verdicts import SPEED_METRICS
from workbench.present import tables
from workbench.present.tables import fmt_change, fmt_changes, fmt_value, table

QUALITY_LABEL = {"measured": "measured (no paired interval in this tree)"}


def _label(row) -> str:
    """The configuration's human name (what it changes, or its sweep `label:`), as every report table names it."""
    return tables._label(row)


def _id(row) -> str:
    return tables._id(row)


def _cell(row: dict | None) -> str:
    if row is None:
        return "not compared"
    return f"{fmt_change(row['change_pct'], row['ci_low_pct'], row['ci_high_pct'])} {row['label']}"


def all_configurations(analysis):
    """Every configuration (A/A copies included, marked) with each speed metric's paired change, interval and
    verdict, the rounds it took and the widest relative half-width (precision) it reached on the headline metrics."""
    compared = analysis.compared
    precision = analysis.precision if analysis.precision is not None else pl.DataFrame()
    reached = {(r["run_id"], r["variant"]): r for r in precision.iter_rows(named=True)} if precision.height else {}
    cells = {(r["run_id"], r["variant"], r["metric"]): r for r in compared.iter_rows(named=True)}
    rows = []
    for c in analysis.configs.filter(~pl.col("is_reference")).sort("point_id", "variant").iter_rows(named=True):
        key = (c["run_id"], c["variant"])
        width = reached.get(key, {})
        stop = width.get("rounds_stopped")
        rows.append(
            {
                "Configuration": _label(c) + (" (A/A check)" if c["family"] == "baseline" else ""),
                "id": _id(c),
                "Changed": fmt_changes(c["changes"]),
                **{metrics.BY_NAME[m].label: _cell(cells.get((*key, m))) for m in SPEED_METRICS},
                "Rounds": "—" if width.get("rounds") is None else f"{width['rounds']}" + (f" ({stop})" if stop else ""),
                "Precision reached": "—" if width.get("precision_pct") is None else f"±{width['precision_pct']:.1f}%",
            }
        )
    note = (
        "Each change is the variant against the baseline of its own run, paired round by round (interleaved "
        "rounds; 95% trimmed-mean t interval over rounds of the per-round log ratio). Verdicts: better/worse when "
        "the interval "
        "excludes zero, the change is beyond the practical threshold and it stays significant after Holm's "
        "correction over the sweep; equivalent when the whole interval lies within ± the threshold; otherwise "
        "inconclusive, printed with its half-width. Precision reached: the widest half-width over throughput and "
        "TTFT relative to the measured ratio (what a `precision` target asks for; ±3% = the ratio is known to within "
        "3% of itself), with the rounds it took and why the run stopped."
    )
    return table(pl.DataFrame(rows), note=note, empty="No configuration was compared with its baseline.")


def _costs(costs) -> str:
    return "; ".join(verdict_risks.fmt_cost(c) for c in costs or []) or "none measured worse"


def recommendations(analysis):
    q = analysis.quality
    rows = [
        {
            "Configuration": _label(r),
            "id": _id(r),
            "Optimisation": r["family"],
            "Changed": fmt_changes(r["changes"]),
            f"{metrics.BY_NAME[analysis.objective].label} vs baseline": fmt_change(
                r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]
            ),
            "Verdict": r["label"],
            "Costs (worse on)": _costs(r["costs"]),
            metrics.BY_NAME["ttft_s_p90"].label: fmt_value("ttft_s_p90", r["ttft_s_p90"]),
            metrics.BY_NAME[q].label: fmt_value(q, r[q]),
            "Quality": QUALITY_LABEL.get(r["quality_basis"], r["quality_basis"])
            if analysis.quality_compared is None
            else f"{r['quality_basis']}; paired verdict: {r['quality_verdict']}",
        }
        for r in analysis.recommended.iter_rows(named=True)
    ]
    return table(
        pl.DataFrame(rows), empty="No configuration is recommended: none is better on the objective and meets the SLOs."
    )


def not_recommended(analysis):
    rows = [
        {
            "Configuration": _label(r),
            "id": _id(r),
            "Optimisation": r["family"],
            f"{metrics.BY_NAME[analysis.objective].label} vs baseline": fmt_change(
                r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]
            ),
            "Why not recommended": r["status"],
            "Costs (worse on)": _costs(r["costs"]),
        }
        for r in analysis.candidates.filter(pl.col("status") != "recommended").iter_rows(named=True)
    ]
    return table(pl.DataFrame(rows), heading="Pareto-optimal, not recommended")


def aa_checks(analysis):
    rows = [
        {
            "A/A copy of the baseline": _label(r),
            "id": _id(r),
            "Metric": metrics.title(r["metric"]),
            "Change vs baseline": fmt_change(r["change_pct"], r["ci_low_pct"], r["ci_high_pct"]),
            "Verdict": r["label"],
            "Check": "FAILED: the noise model is wrong" if r["flagged"] else "passed",
        }
        for r in analysis.aa_checks.iter_rows(named=True)
    ]
    return table(
        pl.DataFrame(rows),
        empty="No A/A copy of the baseline was measured as a variant.",
        note="An A/A copy measures the baseline against itself: expected equivalent (or inconclusive when measured "
        "briefly). Better or worse means the intervals are too narrow for this machine, and the run is flagged.",
    )


def noise_floor(analysis):
    """The old A/A floor, kept as a diagnostic beside the paired intervals; it gates nothing."""
    rows = [
        {
            "Metric": metrics.title(metric),
            "Even vs odd baseline rounds (median over runs)": _pct(floor["median_pct"]),
            "Largest run's": _pct(floor["max_pct"]),
            "Runs with ≥ 2 baseline rounds": str(floor["runs"]),
        }
        for metric, floor in analysis.noise_floor.items()
    ]
    note = (
        "Diagnostic only: each run's baseline, even rounds against odd rounds (unpaired). With few rounds it is a "
        "noisy point estimate; verdicts use the paired intervals above and do not depend on it."
    )
    return table(pl.DataFrame(rows), note=note)


def _pct(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}%"
