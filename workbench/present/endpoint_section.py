"""The served-endpoint section of the report: an `endpoint` sweep's rows shaped into what a service owner asks.

- **Load levels**: per server configuration (a sweep point's `server` flags and served model) and level, the
  latency medians and tails, throughput, goodput against the run's SLO, error rate, and whether the level met
  its SLOs or was over-saturated (`endpoint.levels.level_summaries`, from the rows).
- **Saturation**: per configuration, the highest level that met the SLOs and the first that did not.
- **Served against in process**: the same model and prompts in process (the run's baseline) against the
  server's lowest load level, with paired intervals over interleaved rounds and four verdicts (`verdicts`).
- **Cold start**: launch-to-ready and the first request's TTFT before any warm-up, next to the warm median,
  for the server and in process: what pre-loading and warming up buy, measured.
- **Send lag**: each level's p99 (in `levels`), and whether the load generator fell behind (`slo.send_lag`).
- **Trace replay**: each replayed request's TTFT against when it was sent (`replay`), for the TTFT-over-time chart.
- **Sessions**: TTFT, TPOT and the server's cached prompt tokens per turn index (`turns`, `endpoint.sessions`).

Pure: rows in, frames out; `tables`/`charts` present them; `report.build` loads the sweep.
`workbench report SWEEP --endpoint ENDPOINT_SWEEP`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import cast

import polars as pl

from workbench import names, stats
from workbench.analysis import verdicts


@dataclass
class EndpointSection:
    sweep: str
    levels: pl.DataFrame
    saturation: pl.DataFrame
    gap: pl.DataFrame
    cold: pl.DataFrame
    replay: pl.DataFrame = field(default_factory=pl.DataFrame)
    turns: pl.DataFrame = field(default_factory=pl.DataFrame)

    def to_json(self) -> dict:
        return {
            "sweep": self.sweep,
            "turns": stats.json_safe(self.turns.to_dicts()),
            "levels": stats.json_safe(self.levels.to_dicts()),
            "saturation": stats.json_safe(self.saturation.to_dicts()),
            "served_vs_in_process": stats.json_safe(self.gap.to_dicts()),
            "cold_start": stats.json_safe(self.cold.to_dicts()),
        }


def configuration(changes_json: str | None, label: str | None = None) -> str:
    """A server configuration in words (`names`): its point's `label:`, else its flags and served model, or
    'mlx_lm.server defaults'; a remote target by its URL."""
    if label:
        return label
    changes = json.loads(changes_json or "{}")
    if changes.get("target"):
        return f"target {changes['target']}"
    words = names.configuration_name({**changes, "target": None}).removeprefix("served").removeprefix(", ")
    return words or "mlx_lm.server defaults"


def _label_of(part: pl.DataFrame) -> str | None:
    label = part["point_label"].drop_nulls().first() if "point_label" in part.columns else None
    return cast(str | None, label)  # a String column (polars types first() as any literal)


def run_configurations(rows: pl.DataFrame) -> pl.DataFrame:
    """run_id -> the run's server configuration in words, and its point id (its in-process baseline shares it)."""
    served = rows.filter(pl.col("target").is_not_null())
    out = [
        {"run_id": run, "configuration": configuration(part["changes_json"][0], _label_of(part)), "id": point[:8]}
        for (run, point), part in served.group_by("run_id", "point_id", maintain_order=True)
    ]
    return pl.DataFrame(out, schema={"run_id": pl.String, "configuration": pl.String, "id": pl.String})


def level_table(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (point, served variant): `configuration`, profile, level and the level's summary."""
    from workbench.endpoint.levels import level_summaries, with_pareto

    out = []
    for (point,), part in rows.filter(pl.col("target").is_not_null()).group_by("point_id", maintain_order=True):
        label = configuration(part["changes_json"][0], _label_of(part))
        summary = level_summaries(part).with_columns(
            pl.lit(point).alias("point_id"), pl.lit(label).alias("configuration")
        )
        out.append(summary)
    if not out:
        return pl.DataFrame()
    return with_pareto(pl.concat(out, how="diagonal_relaxed")).sort("configuration", "profile", "level")


def saturation_table(levels: pl.DataFrame) -> pl.DataFrame:
    """Per configuration and profile: the highest level meeting the SLOs and the first that missed them."""
    if levels.is_empty():
        return levels
    return (
        levels.sort("level")
        .group_by("configuration", "profile", maintain_order=True)
        .agg(
            pl.col("level").filter(pl.col("slo_pass")).max().alias("best_level"),
            pl.col("level").filter(~pl.col("slo_pass")).min().alias("first_failing_level"),
            pl.col("goodput_rps").max().alias("best_goodput_rps"),
            pl.col("saturated").any().alias("over_saturated"),
        )
    )


def gap_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Per point: the server's lowest load level against the in-process baseline on the same prompts."""
    metrics = ("throughput_tps", "ttft_s", "e2e_s")  # decode tok/s of a stream is chunk timing, not decoding
    compared = verdicts.speed_comparisons(rows, metrics=metrics).drop("point_id", "family")
    if compared.is_empty():
        return compared
    lowest = (
        rows.filter(
            pl.col("target").is_not_null()
            & (pl.col("kind") == "speed")
            & pl.col("profile").is_in(["synchronous", "concurrency"])
        )
        .group_by("run_id", "variant")
        .agg(pl.col("level").min(), pl.col("changes_json").first())
        .sort("level")
        .group_by("run_id", maintain_order=True)
        .first()
    )
    return (
        compared.join(lowest, on=["run_id", "variant"], how="inner")
        .join(run_configurations(rows), on="run_id", how="left")
        .select(
            "configuration",
            "id",
            "variant",
            "metric",
            "baseline_mean",
            "mean",
            "change_pct",
            "ci_low_pct",
            "ci_high_pct",
            "half_width_pct",
            "rounds",
            "verdict",
            "label",
        )
    )


def cold_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Per point and side (served, in process): startup time, the first request's TTFT, the warm TTFT median."""
    startup = rows.filter(kind="startup")
    if startup.is_empty():
        return pl.DataFrame()
    warm = (
        rows.filter((pl.col("kind") == "speed") & pl.col("ok").fill_null(True))
        .group_by("run_id", "variant")
        .agg(stats.quantile_expr("ttft_s", 0.5).alias("warm_ttft_s"))
    )
    table = (
        startup.join(warm, on=["run_id", "variant"], how="left")
        .join(run_configurations(rows), on="run_id", how="left")
        .with_columns(
            pl.when(pl.col("target").is_null()).then(pl.lit("in process")).otherwise(pl.lit("served")).alias("side"),
        )
        .select(
            "configuration",
            "id",
            "side",
            pl.col("load_s").alias("startup_s"),
            pl.col("ttft_s").alias("cold_ttft_s"),
            "warm_ttft_s",
            (pl.col("ttft_s") / pl.col("warm_ttft_s")).alias("cold_over_warm"),
        )
        .sort("side", "configuration")
    )
    return in_process_once(table)


def in_process_once(table: pl.DataFrame) -> pl.DataFrame:
    """The in-process baseline is one configuration however many points measured it: one row, the medians over
    its runs, named so; each served configuration keeps its own row (with its point id)."""
    inside = table.filter(pl.col("side") == "in process")
    if inside.height <= 1:
        return table
    numbers = ("startup_s", "cold_ttft_s", "warm_ttft_s", "cold_over_warm")
    once = inside.select(
        pl.lit(f"the model in process (median of {inside.height} runs)").alias("configuration"),
        pl.lit("").alias("id"),
        pl.lit("in process").alias("side"),
        *[pl.col(c).median() for c in numbers],
    )
    return pl.concat([once, table.filter(pl.col("side") != "in process")], how="vertical_relaxed")


def replay_table(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per replayed request (profile `trace`): configuration, round, send time, TTFT, ok."""
    replayed = rows.filter((pl.col("kind") == "speed") & (pl.col("profile") == "trace"))
    if replayed.is_empty():
        return pl.DataFrame()
    return (
        replayed.join(run_configurations(rows), on="run_id", how="left")
        .select("configuration", "variant", "round", "sent_s", "arrival_s", "ttft_s", "ok")
        .sort("configuration", "round", "sent_s")
    )


def turn_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Per configuration, sessions variant and turn index: TTFT p50/p90, TPOT p50, prompt and cached tokens."""
    from workbench.endpoint.sessions import per_turn

    played = rows.filter((pl.col("kind") == "speed") & (pl.col("profile") == "sessions"))
    if played.is_empty():
        return pl.DataFrame()
    played = played.join(run_configurations(rows), on="run_id", how="left")
    out = []
    for (label, variant), part in played.group_by("configuration", "variant", maintain_order=True):
        out += [{"configuration": label, "variant": variant, **turn} for turn in per_turn(part.to_dicts())]
    return pl.DataFrame(out, strict=False).sort("configuration", "variant", "turn")


def from_rows(rows: pl.DataFrame, name: str = "runs") -> EndpointSection:
    """The section from endpoint rows: a sweep's verified points (`report.build` loads them), or one or more
    runs' (each run then counts as a point). Rows of other experiments are left out; none left is a DataError."""
    from workbench.errors import DataError

    rows = rows.filter(pl.col("experiment") == "endpoint")
    if rows.is_empty():
        raise DataError(f"{name!r} has no finished endpoint rows")
    if "point_id" not in rows.columns:
        rows = rows.with_columns(pl.col("run_id").alias("point_id"))
    levels = level_table(rows)
    section = EndpointSection(name, levels, saturation_table(levels), gap_table(rows), cold_table(rows))
    section.replay, section.turns = replay_table(rows), turn_table(rows)
    return section


def figures(section: EndpointSection | None) -> dict:
    from workbench.present import charts

    if section is None or section.levels.is_empty():
        return {}
    out = {
        "endpoint_throughput_vs_ttft": charts.throughput_vs_latency(section.levels),
        "endpoint_goodput": charts.goodput_vs_load(section.levels),
    }
    if not section.replay.is_empty():
        out["endpoint_replay_ttft"] = charts.ttft_over_time(section.replay)
    return out
