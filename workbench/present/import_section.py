"""The report's "other tools" section: imported GuideLLM / AIPerf / vLLM results next to the workbench's own
served runs, per load level, on the same axes and under the same definitions.

Every level, ours or imported, is summarised by the one function (`endpoint.slo.summarise`) from rows whose
metrics were computed by the one definition (`measure.timed.request_metrics`; imports recompute them from the
file's per-request timing, `imports.readers`), with the same SLO for goodput (the workbench runs'; none given:
no limits). A file with only summaries shows its figures apart, under the tool's own names and definitions.

Pure: rows in, frames out; `tables.import_levels` / `tables.import_tool_figures` present them.
`workbench report SWEEP [--endpoint ENDPOINT_SWEEP] --compare-import NAME [--compare-import NAME2]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from workbench import stats
from workbench.endpoint.slo import summarise
from workbench.results.imported import TOOL_NAMES, load_import
from workbench.slo import SLO

LEVEL_COLUMNS = (
    "source",
    "definitions",
    "profile",
    "level",
    "requests",
    "error_rate",
    "ttft_s",
    "ttft_s_p90",
    "tpot_s",
    "itl_s_p50",
    "e2e_s",
    "throughput_tps",
    "throughput_rps",
    "goodput_rps",
)


@dataclass
class ImportSection:
    names: list
    levels: pl.DataFrame  # one row per source (a workbench variant or an imported level) and load level
    tool_figures: pl.DataFrame  # each import's own summary figures, under the tool's names
    provenance: list

    def to_json(self) -> dict:
        return {
            "imports": self.names,
            "levels": stats.json_safe(self.levels.to_dicts()),
            "tool_figures": stats.json_safe(self.tool_figures.to_dicts()),
            "provenance": stats.json_safe(self.provenance),
        }


def served_rows(rows: pl.DataFrame | None) -> pl.DataFrame:
    """The workbench's own served requests among report rows (endpoint experiment or `bench --target`)."""
    if rows is None or rows.is_empty() or "target" not in rows.columns:
        return pl.DataFrame()
    return rows.filter(
        pl.col("target").is_not_null() & (pl.col("kind") == "speed") & (pl.col("experiment") != "import")
    )


def run_slo(rows: pl.DataFrame) -> SLO:
    for params in rows["params_json"].unique().to_list() if not rows.is_empty() else []:
        slo = json.loads(params or "{}").get("slo")
        if slo:
            return SLO(**slo)
    return SLO()


def level_rows(rows: pl.DataFrame, *, source: str, definitions: str, slo: SLO) -> list[dict]:
    out = []
    for _, group in rows.group_by("run_id", "variant", maintain_order=True):
        summary = summarise(group.to_dicts(), slo)
        out.append({**{k: summary.get(k) for k in LEVEL_COLUMNS}, "source": source, "definitions": definitions})
    return out


def from_rows(rows: pl.DataFrame | None, names: list[str]) -> ImportSection:
    """The section from the report's rows (the workbench's served runs among them) and the named imports."""
    ours = served_rows(rows)
    slo = run_slo(ours)
    levels = level_rows(ours, source="workbench", definitions="workbench", slo=slo) if not ours.is_empty() else []
    figures, provenance = [], []
    for name in names:
        imported, facts = load_import(name)
        provenance.append({k: facts.get(k) for k in ("name", "tool", "version", "file", "sha256", "per_request")})
        source = f"{TOOL_NAMES[facts['tool']]} {facts['version']} ({name})"
        if not imported.is_empty():
            levels += level_rows(imported, source=source, definitions="workbench (recomputed)", slo=slo)
        for level in facts["levels"]:
            for figure, value in sorted((level.get("tool_summary") or {}).items()):
                figures.append(
                    {"source": source, "profile": level["profile"], "level": level["level"], "figure": figure,
                     "value": value, "definitions": f"{TOOL_NAMES[facts['tool']]}'s own"}
                )  # fmt: skip
    frame = pl.DataFrame(levels, strict=False) if levels else pl.DataFrame()
    if not frame.is_empty():
        frame = frame.select(LEVEL_COLUMNS).sort("profile", "level", "source")
    return ImportSection(list(names), frame, pl.DataFrame(figures, strict=False), provenance)


def figures(section: ImportSection | None) -> dict:
    """Throughput against TTFT p90, one series per source: the endpoint chart, with sources as configurations."""
    from workbench.present import charts

    if section is None or section.levels.is_empty():
        return {}
    data = section.levels.with_columns(pl.col("source").alias("configuration"))
    return {"imports_throughput_vs_ttft": charts.throughput_vs_latency(data)}
