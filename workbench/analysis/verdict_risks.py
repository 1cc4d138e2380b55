"""Risks read off the verdicts: every comparison a configuration is `worse` on, or `inconclusive` with an interval
that reaches past the practical threshold on the bad side ("could be as bad as -X"), speed and quality alike.

A risk never rests on a bare point estimate: it names its verdict and its interval. The rows join the risks of
`gates.risks` (memory headroom, failed points, declared-lossless-but-different) in the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from workbench import metrics, names

MITIGATION = {
    "throughput_tps": "check the batch size and the load it was measured under; measure longer (`precision`)",
    "ttft_s": "cap the batch size or split prefill; set a TTFT SLO (`ttft_s_p90_max`)",
    "e2e_s": "set an end-to-end SLO; prefer the baseline for latency-bound traffic",
    "decode_tps": "check the draft model or quantisation kernel on this backend",
}
QUALITY_MITIGATION = "gate on a quality SLO; use more bits or a calibrated method (GPTQ/AWQ)"


def fmt_value(metric: str, value: float | None) -> str:
    """A value in its display unit from `workbench.metrics` ('35 ms', '1,204 generated tok/s')."""
    known = metrics.get(metric)
    if value is None or not math.isfinite(value):
        return "n/a"
    shown = value * (known.scale if known else 1.0)
    text = f"{shown:,.0f}" if abs(shown) >= 100 else f"{shown:.3g}"
    return f"{text} {known.unit if known else ''}".strip()


def fmt_cost(cost: dict[str, Any]) -> str:
    """'TTFT p50 35 → 244 ms (×7.0)': a metric a configuration is worse on, from `decisions.costs_of`."""
    known = metrics.get(cost["metric"])
    label = known.label if known else cost["metric"]
    before, after = cost.get("baseline"), cost.get("value")
    if before and after:
        unit = known.unit if known else ""
        scale = known.scale if known else 1.0
        ratio = after / before
        factor = f"×{ratio:.2g}" if ratio >= 1.5 or ratio <= 0.67 else f"{(ratio - 1) * 100:+.0f}%"
        return f"{label} {before * scale:,.3g} → {after * scale:,.3g} {unit} ({factor})".replace("  ", " ")
    return f"{label} {cost.get('change_pct', math.nan):+.1f} (paired quality verdict: worse)"


def _bad_bound(row: dict[str, Any], higher_is_better: bool) -> float | None:
    """How bad the interval allows the change to be, in the metric's bad direction (percent, positive = bad)."""
    low: float | None = row.get("ci_low_pct")
    high: float | None = row.get("ci_high_pct")
    if low is None or high is None:
        return None
    return -low if higher_is_better else high


def speed_risks(
    compared: pl.DataFrame, headline: Sequence[str] = ("throughput_tps", "ttft_s")
) -> list[tuple[str, str, str]]:
    """(risk, evidence, mitigation) per speed comparison that is `worse`, or `inconclusive` on a headline metric
    with an interval reaching past `min_effect` on the bad side. A/A copies are checks, not configurations."""
    out = []
    rows = compared.filter(pl.col("family").fill_null("") != "baseline")
    for r in rows.iter_rows(named=True):
        known = metrics.get(r["metric"])
        label = known.label if known else r["metric"]
        up = known.higher_is_better if known else True
        name = _name(r)
        interval = f"{r['change_pct']:+.1f}% (95% CI {r['ci_low_pct']:+.1f}…{r['ci_high_pct']:+.1f}%)"
        evidence = f"{interval} over {r['rounds']} paired rounds"
        mitigation = MITIGATION.get(r["metric"], "measure longer")
        if r["verdict"] == "worse":
            out.append((f"{name}: {label} worse", evidence, mitigation))
        elif r["verdict"] == "inconclusive" and r["metric"] in headline:
            bad = _bad_bound(r, up)
            if bad is not None and bad > (r["min_effect_pct"] or 0):
                sign = "−" if up else "+"
                out.append(
                    (f"{name}: {label} inconclusive (could be as bad as {sign}{bad:.0f}%)", evidence, mitigation)
                )
    return out


def _name(row: dict[str, Any]) -> str:
    """The configuration's human name with its point's short id, as the report's tables write it."""
    changes = row.get("changes", row.get("changes_json"))
    name = names.configuration_name(
        changes, family=row.get("family"), variant=row.get("variant"), label=row.get("point_label")
    )
    return f"{name} [{str(row.get('point_id') or '')[:8]}]"


def quality_risks(quality: pl.DataFrame | None) -> list[tuple[str, str, str]]:
    """The same for the paired quality comparisons of `analysis.quality_compare` (None: nothing to add)."""
    if quality is None or quality.is_empty():
        return []
    out = []
    for r in quality.iter_rows(named=True):
        known = metrics.get(r["metric"])
        label = known.label if known else r["metric"]
        up = known.higher_is_better if known else True
        unit = "points" if r.get("unit") == "points" else "%"
        name = _name(r)
        evidence = f"{r['change']:+.1f} {unit} (95% CI {r['ci_low']:+.1f}…{r['ci_high']:+.1f}) on {r.get('n')} paired"
        evidence += " items" if r.get("unit") == "points" else " units"
        if r["verdict"] == "worse":
            out.append((f"{name}: {label} worse", evidence, QUALITY_MITIGATION))
        elif r["verdict"] == "inconclusive":
            bad = -r["ci_low"] if up else r["ci_high"]
            if bad is not None and bad > 0:
                sign = "−" if up else "+"
                risk = f"{name}: {label} inconclusive (could be as bad as {sign}{bad:.1f} {unit})"
                out.append((risk, evidence, QUALITY_MITIGATION))
    return out


def risk_frame(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["risk", "evidence", "mitigation"], orient="row")
