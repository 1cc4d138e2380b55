"""From a sweep's rows to decisions: configurations, the Pareto front, recommendations and everything a
report shows. Pure functions over polars frames; no plotting, no files.

- What a variant is comes from its rows (`family`, `changes_json`, `lossless`, `quality_measured`, `dtype`),
  never from its name. Rows without those columns (older sweeps) read as "unknown".
- A variant has the baseline's quality only when it is declared lossless *and* its greedy outputs were
  verified identical to the baseline's; any other quality metric it did not measure is null ("not measured").
- Changes are measured per trial against the baseline of the same run, and are significant only beyond the
  A/A noise floor (`workbench.analysis.significance`). A recommendation is Pareto-optimal, meets every SLO, is not
  the baseline (nor an A/A copy of it) and its gain is significant.

SLO targets and regression checks live in `workbench.analysis.gates`; `analyse` puts everything together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench import stats
from workbench.analysis.per_variant import configurations, with_identity
from workbench.analysis.significance import (
    BASELINE,
    HIGHER_IS_BETTER,
    NO_DIFFERENCE,
    comparisons,
    noise_floors,
    sweep_noise_floor,
    trial_samples,
)


def with_pareto(configs: pl.DataFrame, quality: str = "task_accuracy") -> pl.DataFrame:
    """`pareto`: on the front of TTFT p90 (lower), throughput (higher) and `quality`. A/A copies of the
    baseline are measurements of the baseline, not configurations: they never take a place on the front."""
    objectives = {"ttft_s_p90": False, "throughput_tps": True, quality: HIGHER_IS_BETTER.get(quality, True)}
    if configs.is_empty() or any(c not in configs.columns for c in objectives):
        return configs.with_columns(pareto=pl.lit(False))
    copy = ~pl.col("is_reference") & (pl.col("family") == BASELINE)
    indexed = configs.with_row_index("_i")
    eligible = indexed.filter(~copy)
    front = eligible.filter(pl.Series(stats.pareto_mask(eligible, objectives), dtype=pl.Boolean))["_i"]
    return indexed.with_columns(pareto=pl.col("_i").is_in(front.implode())).drop("_i")


def candidates(configs: pl.DataFrame, compared: pl.DataFrame, slo: dict, objective: str) -> pl.DataFrame:
    """Pareto-optimal configurations that are not the baseline (nor an A/A copy of it), each with its
    measured change in `objective` and a `status`: "recommended" only when it meets every SLO and its gain is
    significant; otherwise the reason ("no significant difference", "significantly worse", "misses SLO: ...").
    Recommended ones come first, by gain."""
    from workbench.slo import checks as slo_checks

    pool = configs.filter(pl.col("pareto") & ~pl.col("is_reference") & (pl.col("family") != BASELINE))
    change = compared.filter(pl.col("metric") == objective).drop("metric")
    pool = pool.join(change.drop("mean"), on=["run_id", "variant"], how="left")
    statuses = []
    for config in pool.iter_rows(named=True):
        missed = [c["target"] for c in slo_checks(config, slo) if not c["pass"]]
        if missed:
            statuses.append("misses SLO: " + ", ".join(missed))
        elif not config["significant"]:
            statuses.append(NO_DIFFERENCE)
        elif (config["gain_pct"] or 0) <= 0:
            statuses.append("significantly worse")
        else:
            statuses.append("recommended")
    pool = pool.with_columns(pl.Series("status", statuses, dtype=pl.String), metric=pl.lit(objective))
    return pool.sort([pl.col("status") == "recommended", "gain_pct"], descending=True, nulls_last=True)


def latency_quantiles(rows: pl.DataFrame, groups: pl.DataFrame, *, metric: str = "ttft_s", points: int = 101):
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
    noise_floor: dict
    compared: pl.DataFrame
    candidates: pl.DataFrame
    aa_checks: pl.DataFrame
    slo: dict
    objective: str
    quality: str
    latency: pl.DataFrame
    regressions: pl.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def recommended(self) -> pl.DataFrame:
        return self.candidates.filter(pl.col("status") == "recommended")

    @property
    def floor_known(self) -> bool:
        return self.noise_floor.get(self.objective, {}).get("median_pct") is not None

    def to_json(self) -> dict:
        """The machine-readable verdict (`workbench report --json`): NaN-free, for CI gates."""
        from workbench.analysis.gates import slo_rows

        def entry(row):
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
            }

        regressions = None
        if self.regressions is not None:
            found = self.regressions.filter("regression")
            regressions = {"compared": self.regressions.height, "found": found.to_dicts()}
        return stats.json_safe(
            {
                "objective": self.objective,
                "noise_floor": {"known": self.floor_known, "metrics": self.noise_floor},
                "recommendations": [entry(r) for r in self.recommended.iter_rows(named=True)],
                "not_recommended": [
                    entry(r) for r in self.candidates.iter_rows(named=True) if r["status"] != "recommended"
                ],
                "aa_checks": self.aa_checks.select(
                    "variant", "point_id", "metric", "change_pct", "ci_low_pct", "ci_high_pct", "significant", "verdict"
                ).to_dicts(),
                "slo": {"targets": self.slo, "checks": slo_rows(self.configs, self.recommended, self.slo)},
                "regressions": regressions,
                "warnings": self.warnings,
            }
        )


def _display(row: dict) -> str:
    """A chart label: the configuration's human name and the start of its point id (names may repeat)."""
    from workbench.analysis.gates import config_name

    return config_name(row)


def analyse(
    rows: pl.DataFrame | pl.LazyFrame,
    *,
    slo: dict,
    quality: str = "task_accuracy",
    objective: str = "throughput_tps",
    conditions: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
    tolerance: float = 0.10,
) -> Analysis:
    """All of the above for one sweep. `conditions` (point_id, workers, load_before, load_after, cores) adds
    warnings about how it was measured; `previous` (rows of an earlier sweep) adds regressions."""
    from workbench.analysis import gates

    rows = with_identity(rows)
    configs = with_pareto(configurations(rows), quality=quality)
    samples = trial_samples(rows)
    floors = noise_floors(samples)
    floor = sweep_noise_floor(floors)
    compared = comparisons(samples, floors)
    chosen = candidates(configs, compared, slo, objective)
    ids = ["run_id", "variant", "point_id", "family"]
    aa = configs.filter(~pl.col("is_reference") & (pl.col("family") == BASELINE)).select(ids)
    aa = aa.join(compared, on=["run_id", "variant"], how="inner").sort("point_id", "variant", "metric")
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
        warnings=gates.measurement_warnings(configs, floor, objective, conditions),
    )
