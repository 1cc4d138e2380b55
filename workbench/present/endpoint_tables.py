"""The served-endpoint section's stakeholder tables: load levels, per-turn sessions, saturation, served against in
process, cold start, fidelity under load. Built with the report's formatting (`tables`), from
`endpoint_section.from_rows`."""

from __future__ import annotations

import polars as pl

from workbench.present.charts import title
from workbench.present.tables import fmt_change, fmt_ms, fmt_value, table

NO_ENDPOINT = "No endpoint sweep in this report (`workbench report SWEEP --endpoint ENDPOINT_SWEEP`)."


def endpoint_levels(section, *, slo_source: str | None = None):
    """GuideLLM's console summary as a table, from `endpoint_section.EndpointSection.levels`: one row per
    configuration and load level, request rate and latencies first, then throughput, goodput, errors, send lag
    and whether the level met the endpoint sweep's own SLO."""
    rows = []
    levels = [] if section is None else list(section.levels.iter_rows(named=True))
    for r in levels:
        verdict = "over-saturated" if r["saturated"] else ("meets SLOs" if r["slo_pass"] else "misses SLOs")
        load = r["profile"] if r["profile"] in ("synchronous", "throughput") else f"{r['profile']} {r['level']:g}"
        rows.append(
            {
                "Configuration": r["configuration"],
                "id": str(r.get("point_id") or "")[:8],
                "Load": load,
                "Requests/s": f"{r['throughput_rps']:.3g}" if r.get("throughput_rps") is not None else "n/a",
                "TTFT p50 / p90": f"{fmt_ms(r['ttft_s'])} / {fmt_ms(r['ttft_s_p90'])}",
                "ITL p50": fmt_ms(r.get("itl_s_p50")),
                "TPOT p50": fmt_ms(r["tpot_s"]),
                "E2E p50": fmt_ms(r.get("e2e_s")),
                "Output tok/s": fmt_value("throughput_tps", r["throughput_tps"]).removesuffix(" generated tok/s"),
                "Goodput": f"{r['goodput_rps']:.3g} req/s" if r["goodput_rps"] is not None else "n/a",
                "Errors": f"{100 * r['error_rate']:.1f}%" + (f" ({r['top_error']})" if r["top_error"] else ""),
                "Send lag p50 / p99": f"{fmt_ms(r.get('send_lag_s_p50'))} / {fmt_ms(r.get('send_lag_s_p99'))}",
                "SLOs": verdict + ("; load generator fell behind" if r.get("fell_behind") else ""),
            }
        )
    note = "Goodput: requests per second that succeeded and met every per-request SLO, over the level's window."
    if slo_source:
        note += f" SLO: the endpoint sweep's own ({slo_source}), not the report's default."
    if any(r.get("fell_behind") for r in levels):
        from workbench.endpoint.slo import FELL_BEHIND

        note += f" A level marked as fell behind: {FELL_BEHIND} (p99 send lag above 10 ms or 10% of the mean gap)."
    return table(pl.DataFrame(rows), heading="Load levels", empty=NO_ENDPOINT, note=note)


def endpoint_turns(section):
    """From `EndpointSection.turns`: TTFT, TPOT and cached prompt tokens per turn index of live sessions."""
    rows = [
        {
            "Configuration": r["configuration"],
            "Sessions": r["variant"],
            "Turn": r["turn"],
            "Requests": f"{r['ok']} of {r['requests']}",
            "TTFT p50 / p90": f"{fmt_ms(r['ttft_s'])} / {fmt_ms(r['ttft_s_p90'])}",
            "TPOT p50": fmt_ms(r["tpot_s"]),
            "Prompt tokens": f"{r['prompt_tokens_mean']:.0f}" if r["prompt_tokens_mean"] is not None else "n/a",
            "Cached prompt tokens": "not reported"
            if r["cached_tokens_mean"] is None
            else f"{r['cached_tokens_mean']:.0f}",
        }
        for r in ([] if section is None or section.turns.is_empty() else section.turns.iter_rows(named=True))
    ]
    note = "Means per turn; cached: the server's usage.prompt_tokens_details.cached_tokens."
    return table(pl.DataFrame(rows), empty="No multi-turn sessions in this endpoint run.", note=note)


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
            "Verdict": r["label"],
            "Rounds": str(r["rounds"]),
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
            "First request TTFT (cold)": fmt_ms(r["cold_ttft_s"]),
            "TTFT p50 warm": fmt_ms(r["warm_ttft_s"]),
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
