"""The one line a sweep, `make demo` and `workbench report` end with: the recommendation, its gain with its
interval and its main cost, e.g. "batch 8: throughput +196% (95% CI +110…+283%), TTFT p90 35 → 244 ms"; or
what blocked each candidate when nothing is recommended; for an endpoint sweep, the best load level that met
its SLOs. Computed by `analysis.decisions.analyse` from the sweep's verified rows, as the report is.

    workbench sweep params/default.yaml      # ... ends with "headline: ..."
"""

from __future__ import annotations

import sys

import polars as pl

from workbench import console, names, terminal

COST_METRICS = ("ttft_s_p90", "ttft_s", "e2e_s", "tpot_s", "decode_tps", "peak_mem_bytes", "perplexity")
MAX_BLOCKED = 3


def _config_name(row: dict) -> str:
    return names.configuration_name(
        row.get("changes"), family=row.get("family"), variant=row.get("variant"), label=row.get("point_label")
    )


def _moved(metric: str, before, after) -> str:
    label, unit, _ = terminal.UNITS.get(metric, (metric, "", 1.0))
    ratio = f", ×{after / before:.1f}" if before and after and (after / before >= 1.5 or after / before <= 0.67) else ""
    return f"{label} {terminal.value(metric, before)} → {terminal.value(metric, after)} {unit}{ratio}".strip()


def main_cost(analysis, row: dict) -> str:
    """The metric where a configuration is worst against its run's baseline: a 'worse' verdict first, else a
    TTFT p90, memory or perplexity at least 10% worse; 'no measured cost' otherwise."""
    compared = analysis.compared.filter((pl.col("run_id") == row["run_id"]) & (pl.col("variant") == row["variant"]))
    worse = [r for r in compared.iter_rows(named=True) if r.get("verdict") == "worse"]
    if worse:
        top = max(worse, key=lambda r: abs(r.get("change_pct") or 0))
        return _moved(top["metric"], top["baseline_mean"], top["mean"])
    base = analysis.configs.filter(pl.col("is_reference") & (pl.col("run_id") == row["run_id"]))
    if base.is_empty():
        return "no measured cost"
    base_row = base.row(0, named=True)
    for metric in COST_METRICS:
        before, after = base_row.get(metric), row.get(metric)
        if terminal.missing(before) or terminal.missing(after) or not before:
            continue
        lower_is_better = metric not in ("decode_tps",)
        change = (after - before) / before * (1 if lower_is_better else -1)
        if change >= 0.10:
            return _moved(metric, before, after)
    return "no measured cost"


def headline(analysis) -> str:
    """The line for a sweep analysed by `decisions.analyse`."""
    from workbench.present.header import blocked

    objective = terminal.UNITS.get(analysis.objective, (analysis.objective,))[0]
    if analysis.recommended.height:
        best = analysis.recommended.row(0, named=True)
        configs = analysis.configs.filter((pl.col("run_id") == best["run_id"]) & (pl.col("variant") == best["variant"]))
        row = configs.row(0, named=True) if configs.height else best
        gain = terminal.change(best).replace(" (", " (95% CI ", 1)
        return f"{_config_name(row)}: {objective} {gain}, {main_cost(analysis, row)}"
    stopped = blocked(analysis)
    if not stopped:
        return "nothing recommended: no configuration besides the baseline was measured"
    parts = [f"{b['name']}: {b['reason']}" for b in stopped[:MAX_BLOCKED]]
    more = f"; {len(stopped) - MAX_BLOCKED} more in the report" if len(stopped) > MAX_BLOCKED else ""
    return "nothing recommended (" + "; ".join(parts) + more + ")"


def endpoint_headline(section) -> str:
    """The best level of an endpoint sweep: the highest goodput among levels that met the SLOs."""
    levels = section.levels
    if levels.is_empty():
        return "no served load level was measured"
    passing = levels.filter(pl.col("slo_pass"))
    if passing.is_empty():
        return "no served load level met the endpoint sweep's SLOs"
    best = passing.sort("goodput_rps", descending=True, nulls_last=True).row(0, named=True)
    load = (
        best["profile"] if best["profile"] in ("synchronous", "throughput") else f"{best['profile']} {best['level']:g}"
    )
    return (
        f"{best['configuration']} at {load}: goodput {terminal.number(best['goodput_rps'])} req/s, "
        f"TTFT p90 {terminal.value('ttft_s_p90', best['ttft_s_p90'])} ms, "
        f"throughput {terminal.value('throughput_tps', best['throughput_tps'])} tok/s"
    )


def summary_extras(report) -> dict:
    """What `summary.json` (and `report --json`) adds for a reader: the headline lines, the header, and the
    `--baseline` configurations left out."""
    from workbench.present.header import header_lines

    return {
        "headline": headline(report.analysis),
        "endpoint_headline": endpoint_headline(report.endpoint) if report.endpoint is not None else None,
        "header": dict(header_lines(report.rows, report.env)) if report.rows is not None else None,
        "baseline_left_out": report.baseline_left_out,
    }


def sweep_headline(sweep: str) -> str | None:
    """The headline of a sweep folder's verified points; None when it has none or is not one experiment's."""
    from workbench.analysis import decisions, gates
    from workbench.errors import WorkbenchError
    from workbench.results.store import load_sweep_results

    try:
        rows = load_sweep_results(sweep, warn=False).collect()
    except (WorkbenchError, FileNotFoundError):
        return None
    if rows.is_empty():
        return None
    if set(rows["experiment"].unique()) == {"endpoint"}:
        from workbench.present import endpoint_section

        return endpoint_headline(endpoint_section.from_rows(rows, sweep))
    return headline(decisions.analyse(rows, decisions.Criteria(slo=gates.load_slo(None))))


def sweep_main(argv: list[str] | None = None) -> int:
    """`workbench sweep`: the sweep runner, then (without `--json`) the headline of what the sweep now holds."""
    from workbench.sweep import runner

    code = runner.main(argv)
    args, _ = runner.setup_arg_parser().parse_known_args(argv)
    if code in (0, 1) and not args.json and not args.prepare_only:
        from workbench.errors import WorkbenchError
        from workbench.sweep.spec import sweep_name

        try:
            line = sweep_headline(sweep_name(args.params))
        except WorkbenchError as exc:  # the sweep itself finished: say why there is no headline, keep its code
            line = f"none ({exc})"
        if line:
            print(f"headline: {line}")
            sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(console.entry(sweep_main))
