"""Tables of the report's "other tools" section (`import_section`): imported levels next to the workbench's,
and each tool's own figures under its own names. Formatting as `tables` (units, one table helper)."""

from __future__ import annotations

import polars as pl

from workbench.present.tables import fmt_ms, fmt_value, table

NO_IMPORTS = "No imported results (`workbench import FILE --tool T`; then `workbench report --compare-import NAME`)."


def import_levels(section):
    """From `import_section.ImportSection.levels`: the workbench's and other tools' levels on the same axes."""
    rows = []
    for r in [] if section is None else section.levels.iter_rows(named=True):
        rows.append(
            {
                "Source": r["source"],
                "Load": f"{r['profile']} {r['level']:g}",
                "Requests (errors)": f"{r['requests']} ({100 * r['error_rate']:.0f}%)",
                "TTFT p50 / p90": f"{fmt_ms(r['ttft_s'])} / {fmt_ms(r['ttft_s_p90'])}",
                "TPOT p50": fmt_ms(r["tpot_s"]),
                "ITL p50": fmt_ms(r["itl_s_p50"]) if r["itl_s_p50"] == r["itl_s_p50"] else "not in file",
                "E2E p50": fmt_ms(r["e2e_s"]),
                "Throughput": fmt_value("throughput_tps", r["throughput_tps"]),
                "Goodput": f"{r['goodput_rps']:.3g} req/s" if r["goodput_rps"] is not None else "n/a",
            }
        )
    note = (
        "Every row computed by the workbench's definitions (docs/metrics.md) from per-request timing: the "
        "imported tools' own figures, under their own names, are in the next table."
    )
    return table(pl.DataFrame(rows), empty=NO_IMPORTS, note=note)


def import_tool_figures(section):
    rows = [
        {
            "Source": r["source"],
            "Load": f"{r['profile']} {r['level']:g}",
            "Figure (the tool's name)": r["figure"],
            "Value": "n/a" if r["value"] is None else f"{r['value']:.4g}",
            "Definitions": r["definitions"],
        }
        for r in ([] if section is None else section.tool_figures.iter_rows(named=True))
    ]
    note = "As the tool reported them: GuideLLM's ITL is our TPOT and its TPOT includes TTFT (docs/metrics.md)."
    return table(pl.DataFrame(rows), empty=NO_IMPORTS, note=note)
