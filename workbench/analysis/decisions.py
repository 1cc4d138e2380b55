"""From a sweep's rows to decisions: configurations, the Pareto front, recommendations and everything a
report shows. Pure functions over polars frames; no plotting, no files.

- What a variant is comes from its rows (`family`, `changes_json`, `lossless`, `quality_measured`, `dtype`),
  never from its name. Rows without those columns (older sweeps) read as "unknown".
- A variant has the baseline's quality only when it is declared lossless *and* its greedy outputs were
  verified identical to the baseline's; any other quality metric it did not measure is null ("not measured").
- Changes are paired by round against the baseline of the same run and get one of four verdicts, Holm-corrected
  across the sweep (`workbench.analysis.verdicts`). A recommendation is Pareto-optimal, meets every SLO, is not
  the baseline (nor an A/A copy of it) and its objective's verdict is `better`; it lists its costs (the metrics
  where it is `worse`). The old A/A noise floor (`significance`) is kept as a diagnostic and gates nothing.

SLO targets and regression checks live in `workbench.analysis.gates`; `analyse` puts everything together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench import stats
from workbench.analysis import verdicts
from workbench.analysis.per_variant import configurations, with_identity
from workbench.analysis.quality_compare import QualityMargins
from workbench.analysis.significance import BASELINE, HIGHER_IS_BETTER, noise_floors, sweep_noise_floor, trial_samples

QUALITY_RANK = {"worse": 0, "inconclusive": 1, "equivalent": 2, "better": 3}


def with_pareto(
    configs: pl.DataFrame, quality: str = "task_accuracy", quality_compared: pl.DataFrame | None = None
) -> pl.DataFrame:
    """`pareto`: on the front of TTFT p90 (lower), throughput (higher) and `quality`. With the sweep's paired
    quality comparisons (`quality_compared`, `analysis.quality_compare`), the quality axis is the configuration's
    verdict on `quality` against its baseline (worse < inconclusive < equivalent < better; the baseline itself
    is equivalent, a configuration without a comparison inconclusive), not its point estimate: a noisy 1-point
    lead on 100 items does not push a faster configuration off the front. A/A copies of the baseline are
    measurements of the baseline, not configurations: they never take a place on the front."""
    axis = quality
    if quality_compared is not None and not quality_compared.is_empty() and "point_id" in configs.columns:
        from workbench.analysis.quality_compare import overall_verdicts

        verdict = overall_verdicts(quality_compared, (quality,)).select("point_id", "variant", "quality_verdict")
        if not verdict.is_empty():
            configs = configs.join(verdict, on=["point_id", "variant"], how="left")
            unknown = pl.when(pl.col("family") == BASELINE).then(pl.lit("equivalent")).otherwise(pl.lit("inconclusive"))
            rank = pl.col("quality_verdict").fill_null(unknown).replace_strict(QUALITY_RANK, return_dtype=pl.Int64)
            configs, axis = configs.with_columns(_quality_rank=rank).drop("quality_verdict"), "_quality_rank"
    objectives = {"ttft_s_p90": False, "throughput_tps": True, axis: HIGHER_IS_BETTER.get(axis, True)}
    if configs.is_empty() or any(c not in configs.columns for c in objectives):
        return configs.with_columns(pareto=pl.lit(False)).drop("_quality_rank", strict=False)
    copy = ~pl.col("is_reference") & (pl.col("family") == BASELINE)
    indexed = configs.with_row_index("_i")
    eligible = indexed.filter(~copy)
    front = eligible.filter(pl.Series(stats.pareto_mask(eligible, objectives), dtype=pl.Boolean))["_i"]
    marked = indexed.with_columns(pareto=pl.col("_i").is_in(front.implode())).drop("_i")
    return marked.drop("_quality_rank", strict=False)


def candidates(configs: pl.DataFrame, compared: pl.DataFrame, slo: dict[str, Any], objective: str) -> pl.DataFrame:
    """Pareto-optimal configurations that are not the baseline (nor an A/A copy of it), each with its
    measured change in `objective`, its `costs` (every comparison it is `worse` on, speed and quality) and a
    `status`: "recommended" only when it meets every SLO and its objective's verdict is `better`; otherwise the
    reason ("misses SLO: ...", "worse", "equivalent (within ±5%)", "inconclusive (±8%)"). Recommended ones
    come first, by gain."""
    from workbench.slo import checks as slo_checks

    pool = configs.filter(pl.col("pareto") & ~pl.col("is_reference") & (pl.col("family") != BASELINE))
    change = compared.filter(pl.col("metric") == objective).drop("metric", "family", "point_id")
    pool = pool.join(change.drop("mean"), on=["run_id", "variant"], how="left")
    statuses, costs = [], []
    for config in pool.iter_rows(named=True):
        missed = [c["target"] for c in slo_checks(config, slo) if not c["pass"]]
        if missed:
            statuses.append("misses SLO: " + ", ".join(missed))
        elif config["verdict"] == "better":
            statuses.append("recommended")
        else:
            statuses.append(config["label"] or "inconclusive (no interval)")
        costs.append(costs_of(compared, config["run_id"], config["variant"]))
    pool = pool.with_columns(
        pl.Series("status", statuses, dtype=pl.String),
        pl.Series("costs", costs, dtype=pl.List(COST)),
        metric=pl.lit(objective),
    )
    return pool.sort([pl.col("status") == "recommended", "gain_pct"], descending=True, nulls_last=True)


COST = pl.Struct({"metric": pl.String, "baseline": pl.Float64, "value": pl.Float64, "change_pct": pl.Float64})


def costs_of(compared: pl.DataFrame, run_id: str, variant: str) -> list[dict[str, Any]]:
    """What a configuration pays: each comparison it is `worse` on (metric, baseline's value, its value, change);
    `present.tables` prints them as "TTFT p50 35 → 244 ms (×7.0)"."""
    mine = (pl.col("run_id") == run_id) & (pl.col("variant") == variant) & (pl.col("verdict") == "worse")
    return [
        {"metric": r["metric"], "baseline": r["baseline_mean"], "value": r["mean"], "change_pct": r["change_pct"]}
        for r in compared.filter(mine).iter_rows(named=True)
    ]


def with_quality_verdicts(pool: pl.DataFrame, quality: pl.DataFrame | None) -> pl.DataFrame:
    """Each candidate's paired quality verdicts (`analysis.quality_compare`, when present): `quality_verdict` is
    "worse" if any is, else "inconclusive" if any is, else "kept"; quality losses join its `costs`."""
    if quality is None or quality.is_empty() or pool.is_empty():
        return pool.with_columns(quality_verdict=pl.lit(None, pl.String))
    labels, costs = [], []
    for row in pool.iter_rows(named=True):
        mine = quality.filter((pl.col("point_id") == row["point_id"]) & (pl.col("variant") == row["variant"]))
        found = set(mine["verdict"].to_list())
        labels.append("worse" if "worse" in found else "inconclusive" if "inconclusive" in found else "kept")
        worse = mine.filter(pl.col("verdict") == "worse")
        extra = [
            {"metric": r["metric"], "baseline": None, "value": None, "change_pct": r["change"]}
            for r in worse.iter_rows(named=True)
        ]
        costs.append((row["costs"] or []) + extra)
    return pool.with_columns(
        pl.Series("quality_verdict", labels, dtype=pl.String), pl.Series("costs", costs, dtype=pl.List(COST))
    )


def latency_quantiles(
    rows: pl.DataFrame, groups: pl.DataFrame, *, metric: str = "ttft_s", points: int = 101
) -> pl.DataFrame:
    """The empirical CDF of a per-request latency as `points` quantiles per group: `groups` maps
    (run_id, variant) to a `label`; a row with run_id null stands for that variant in every run."""
    speed = with_identity(rows).filter(pl.col("kind") == "speed").select("run_id", "variant", metric).drop_nulls()
    every_run = groups.filter(pl.col("run_id").is_null()).drop("run_id")
    labelled = pl.concat(
        [
            speed.join(groups.drop_nulls("run_id"), on=["run_id", "variant"], how="inner"),
            speed.join(every_run, on="variant", how="inner"),
        ]
    )
    qs = np.linspace(0, 1, points)
    wide = labelled.group_by("label", maintain_order=True).agg(
        *[stats.quantile_expr(metric, float(q)).alias(f"{q:.4f}") for q in qs]
    )
    return (
        wide.unpivot(index="label", variable_name="fraction", value_name=metric)
        .with_columns(pl.col("fraction").cast(pl.Float64))
        .sort("label", "fraction")
    )


@dataclass
class Analysis:
    """Everything a report shows, computed once from a sweep's rows."""

    configs: pl.DataFrame
    samples: pl.DataFrame
    floors: pl.DataFrame
    noise_floor: dict[str, Any]
    compared: pl.DataFrame
    candidates: pl.DataFrame
    aa_checks: pl.DataFrame
    slo: dict[str, Any]
    objective: str
    quality: str
    latency: pl.DataFrame
    regressions: pl.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    quality_compared: pl.DataFrame | None = None  # analysis.quality_compare's paired quality verdicts, when present
    precision: pl.DataFrame | None = None  # per (point, variant): half-width reached, rounds, why the run stopped

    @property
    def recommended(self) -> pl.DataFrame:
        return self.candidates.filter(pl.col("status") == "recommended")

    @property
    def floor_known(self) -> bool:
        return self.noise_floor.get(self.objective, {}).get("median_pct") is not None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable verdict (`workbench report --json`): NaN-free, for CI gates."""
        from workbench.analysis.gates import slo_rows

        def entry(row: dict[str, Any]) -> dict[str, Any]:
            return {
                "variant": row["variant"],
                "point_id": row["point_id"],
                "family": row["family"],
                "params": json.loads(row["params"] or "{}"),
                "metric": row["metric"],
                "change": row["change"],
                "change_pct": row["change_pct"],
                "ci": [row["ci_low"], row["ci_high"]],
                "ci_pct": [row["ci_low_pct"], row["ci_high_pct"]],
                "significant": bool(row["significant"]),
                "status": row["status"],
                "verdict": row["verdict"],
                "half_width_pct": row["half_width_pct"],
                "costs": row["costs"],
                "quality_verdict": row.get("quality_verdict"),
            }

        regressions = None
        if self.regressions is not None:
            found = self.regressions.filter("regression")
            regressions = {"compared": self.regressions.height, "found": found.to_dicts()}
        summary: dict[str, Any] = stats.json_safe(
            {
                "objective": self.objective,
                "comparisons": verdicts.comparisons_json(self.compared, self.configs, self.quality_compared),
                "noise_floor": {"known": self.floor_known, "metrics": self.noise_floor, "gates_verdicts": False},
                "recommendations": [entry(r) for r in self.recommended.iter_rows(named=True)],
                "not_recommended": [
                    entry(r) for r in self.candidates.iter_rows(named=True) if r["status"] != "recommended"
                ],
                "aa_checks": self.aa_checks.select(
                    "variant",
                    "point_id",
                    "metric",
                    "change_pct",
                    "ci_low_pct",
                    "ci_high_pct",
                    "half_width_pct",
                    "significant",
                    "verdict",
                    "flagged",
                ).to_dicts(),
                "slo": {"targets": self.slo, "checks": slo_rows(self.configs, self.recommended, self.slo)},
                "regressions": regressions,
                "warnings": self.warnings,
            }
        )
        return summary


def _display(row: dict[str, Any]) -> str:
    """A chart label: the configuration's human name and the start of its point id (names may repeat)."""
    from workbench.analysis.gates import config_name

    return config_name(row)


@dataclass(frozen=True)
class Criteria:
    """What a sweep is judged by: the SLO limits (`<metric>_max` / `_min`), the quality metric of the front, the
    objective to maximise, the regression `tolerance` against an earlier sweep, `min_effect` (a fraction; the SLO
    file's, overriding the practical threshold the runs recorded) and the quality margins (`gates.QualityMargins`)."""

    slo: dict[str, Any] = field(default_factory=dict)
    quality: str = "task_accuracy"
    objective: str = "throughput_tps"
    tolerance: float = 0.10
    min_effect: float | None = None
    quality_margins: QualityMargins | None = None


def analyse(
    rows: pl.DataFrame | pl.LazyFrame,
    criteria: Criteria | None = None,
    *,
    conditions: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
) -> Analysis:
    """All of the above for one sweep, judged by `criteria`. `conditions` (point_id, workers, load_before,
    load_after, cores) adds warnings about how it was measured; `previous` (rows of an earlier sweep) adds
    regressions."""
    from workbench.analysis import gates

    c = criteria or Criteria()
    slo, quality, objective, tolerance = c.slo, c.quality, c.objective, c.tolerance
    min_effect, quality_margins = c.min_effect, c.quality_margins

    rows = with_identity(rows)
    quality_compared = verdicts.quality_comparisons(rows, quality_margins)
    configs = with_pareto(configurations(rows), quality=quality, quality_compared=quality_compared)
    samples = trial_samples(rows)
    floors = noise_floors(samples)
    floor = sweep_noise_floor(floors)
    compared = verdicts.speed_comparisons(rows, min_effect=min_effect)
    chosen = with_quality_verdicts(candidates(configs, compared, slo, objective), quality_compared)
    aa = verdicts.aa_checks(compared, configs)
    shown = chosen.filter(pl.col("status") == "recommended").head(8)
    groups = pl.concat(
        [
            pl.DataFrame({"run_id": [None], "variant": [BASELINE], "label": ["baseline (all runs)"]}),
            shown.select(
                "run_id",
                "variant",
                label=pl.Series([_display(r) for r in shown.iter_rows(named=True)], dtype=pl.String),
            ),
        ],
        how="vertical_relaxed",
    )
    return Analysis(
        configs=configs,
        samples=samples,
        floors=floors,
        noise_floor=floor,
        compared=compared,
        candidates=chosen,
        aa_checks=aa,
        slo=slo,
        objective=objective,
        quality=quality,
        latency=latency_quantiles(rows, groups),
        regressions=gates.regressions(rows, previous, tolerance=tolerance) if previous is not None else None,
        warnings=gates.measurement_warnings(configs, floor, objective, conditions)
        + verdicts.method_warnings(compared, aa),
        quality_compared=quality_compared,
        precision=verdicts.precision_by_variant(compared),
    )
