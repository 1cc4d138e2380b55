"""From a sweep's rows to decisions: configurations, the Pareto front, recommendations and everything a
report shows. Pure functions over polars frames; no plotting, no files.

- What a variant is comes from its rows (`family`, `changes_json`, `lossless`, `quality_measured`, `dtype`),
  never from its name. Rows without those columns (older sweeps) read as "unknown".
- A variant has the baseline's quality only when it is declared lossless *and* its greedy outputs were
  verified identical to the baseline's; any other quality metric it did not measure is null ("not measured").
- Changes are measured per trial against the baseline of the same run, and are significant only beyond the
  A/A noise floor (`workbench.significance`). A recommendation is Pareto-optimal, meets every SLO, is not
  the baseline (nor an A/A copy of it) and its gain is significant.

SLO targets and regression checks live in `workbench.gates`; `analyse` puts everything together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench import results, stats
from workbench.significance import (
    BASELINE,
    HIGHER_IS_BETTER,
    NO_DIFFERENCE,
    comparisons,
    noise_floors,
    sweep_noise_floor,
    trial_samples,
)

QUALITY_KINDS = {
    "perplexity": ("perplexity",),
    "task": ("task_accuracy", "task_f1"),
    "fidelity": ("kl_mean", "greedy_agreement"),
}
QUALITY_COLUMNS = tuple(m for metrics in QUALITY_KINDS.values() for m in metrics)
EXACT_WHEN_IDENTICAL = {"kl_mean": 0.0, "greedy_agreement": 1.0}
IDENTITY = {
    "point_id": pl.String,
    "family": pl.String,
    "changes_json": pl.String,
    "lossless": pl.Boolean,
    "quality_measured": pl.String,
    "dtype": pl.String,
    "round": pl.Int32,
    "params_json": pl.String,
}


def with_identity(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The rows with every identity column present (null where a sweep did not record it)."""
    df = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in IDENTITY.items() if c not in df.columns]
    df = df.with_columns(missing) if missing else df
    return df.with_columns(pl.col("point_id").fill_null(pl.col("run_id")))


def configurations(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (run, variant): its summary metrics, identity as declared, and quality by the rules above.

    `is_reference` marks each run's baseline; `family` is the declared one ("baseline" for a run's reference
    when undeclared, else "unknown"); `quality_basis` says whether quality was measured, inherited or neither."""
    df = with_identity(rows)
    if df.is_empty():
        return pl.DataFrame(schema={"run_id": pl.String, "variant": pl.String, "is_reference": pl.Boolean})
    identity = df.group_by("run_id", "variant", maintain_order=True).agg(
        pl.col(c).drop_nulls().first() for c in IDENTITY if c != "round"
    )
    summaries = pl.concat(
        [results.summarise_variants(g).with_columns(run_id=pl.lit(run)) for (run,), g in df.group_by("run_id")],
        how="diagonal_relaxed",
    )
    speed = speed_summary(df)
    summaries = summaries.drop([c for c in speed.columns if c not in ("run_id", "variant")], strict=False)
    frame = identity.join(summaries, on=["run_id", "variant"], how="left").join(
        speed, on=["run_id", "variant"], how="left"
    )
    if "identical_to_baseline" not in frame.columns:
        frame = frame.with_columns(identical_to_baseline=pl.lit(None, pl.Boolean))
    reference = pl.col("variant") == BASELINE
    frame = frame.with_columns(
        is_reference=reference,
        family=pl.coalesce("family", pl.when(reference).then(pl.lit(BASELINE)).otherwise(pl.lit("unknown"))),
        params=pl.col("params_json").fill_null("{}"),
        changes=pl.col("changes_json"),
    ).drop("params_json", "changes_json")
    return _apply_quality_rules(frame)


def speed_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (run, variant): TTFT p50/p90, TPOT, E2E, decode and prefill medians (one percentile definition),
    peak memory, and throughput = generated tokens / summed windows of its (round, trial) units.
    (`results.summarise_variants` keys windows by trial alone, which counts one window per trial index
    when a run has several rounds; its quality figures are used as they are.)"""
    speed = with_identity(rows).filter(pl.col("kind") == "speed")
    keys = ["run_id", "variant"]
    medians = ("ttft_s", "tpot_s", "e2e_s", "decode_tps", "prefill_tps")
    per = speed.group_by(keys).agg(
        *[stats.quantile_expr(m, 0.5).alias(m) for m in medians if m in speed.columns],
        stats.quantile_expr("ttft_s", 0.9).alias("ttft_s_p90"),
        pl.col("peak_mem_bytes").max(),
        pl.col("generated_tokens").sum(),
        pl.len().alias("requests"),
    )
    windows = (
        speed.group_by(*keys, "round", "trial")
        .agg(pl.col("window_s").first())
        .group_by(keys)
        .agg(pl.col("window_s").sum())
    )
    return (
        per.join(windows, on=keys, how="left")
        .with_columns(
            throughput_tps=pl.col("generated_tokens") / pl.col("window_s"),
            throughput_rps=pl.col("requests") / pl.col("window_s"),
        )
        .drop("window_s")
    )


def _apply_quality_rules(frame: pl.DataFrame) -> pl.DataFrame:
    for column in QUALITY_COLUMNS:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias(column))
    base = frame.filter("is_reference").select("run_id", *[pl.col(c).alias(f"_b_{c}") for c in QUALITY_COLUMNS])
    frame = frame.join(base.unique("run_id", keep="first"), on="run_id", how="left")
    declared = pl.col("quality_measured").str.replace_all(" ", "").str.split(",")
    inherits = ~pl.col("is_reference") & pl.col("lossless").fill_null(False) & pl.col("identical_to_baseline")
    inherits = inherits.fill_null(False)
    own, final = {}, []
    for kind, metrics in QUALITY_KINDS.items():
        measured = pl.col("quality_measured").is_null() | declared.list.contains(kind)
        for m in metrics:
            own[m] = pl.when(measured).then(pl.col(m)).otherwise(None)
            inherited = pl.lit(EXACT_WHEN_IDENTICAL[m]) if m in EXACT_WHEN_IDENTICAL else pl.col(f"_b_{m}")
            final.append(pl.when(inherits & own[m].is_null()).then(inherited).otherwise(own[m]).alias(m))
    any_own = pl.any_horizontal(*[e.is_not_null() for e in own.values()])
    basis = (
        pl.when(inherits & ~pl.all_horizontal(*[e.is_not_null() for e in own.values()]))
        .then(pl.lit("baseline's (lossless, identical outputs)"))
        .when(any_own)
        .then(pl.lit("measured"))
        .otherwise(pl.lit("not measured"))
    )
    return frame.with_columns(*final, basis.alias("quality_basis")).drop([f"_b_{c}" for c in QUALITY_COLUMNS])


def pareto_mask(df: pl.DataFrame, objectives: dict[str, bool]) -> list[bool]:
    """True where no other row is at least as good on every objective and better on one (rows with a
    missing objective are never on the front)."""
    if df.is_empty():
        return []
    values = np.column_stack([df[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in objectives])
    scores = values * np.array([1.0 if up else -1.0 for up in objectives.values()])
    complete = ~np.isnan(scores).any(axis=1)
    valid = scores[complete]
    mask = np.zeros(len(scores), dtype=bool)
    for i in np.flatnonzero(complete):
        dominated = (np.all(valid >= scores[i], axis=1) & np.any(valid > scores[i], axis=1)).any()
        mask[i] = not dominated
    return mask.tolist()


def with_pareto(configs: pl.DataFrame, quality: str = "task_accuracy") -> pl.DataFrame:
    """`pareto`: on the front of TTFT p90 (lower), throughput (higher) and `quality`. A/A copies of the
    baseline are measurements of the baseline, not configurations: they never take a place on the front."""
    objectives = {"ttft_s_p90": False, "throughput_tps": True, quality: HIGHER_IS_BETTER.get(quality, True)}
    if configs.is_empty() or any(c not in configs.columns for c in objectives):
        return configs.with_columns(pareto=pl.lit(False))
    copy = ~pl.col("is_reference") & (pl.col("family") == BASELINE)
    indexed = configs.with_row_index("_i")
    eligible = indexed.filter(~copy)
    front = eligible.filter(pl.Series(pareto_mask(eligible, objectives), dtype=pl.Boolean))["_i"]
    return indexed.with_columns(pareto=pl.col("_i").is_in(front.implode())).drop("_i")


def candidates(configs: pl.DataFrame, compared: pl.DataFrame, slo: dict, objective: str) -> pl.DataFrame:
    """Pareto-optimal configurations that are not the baseline (nor an A/A copy of it), each with its
    measured change in `objective` and a `status`: "recommended" only when it meets every SLO and its gain is
    significant; otherwise the reason ("no significant difference", "significantly worse", "misses SLO: ...").
    Recommended ones come first, by gain."""
    from workbench.gates import slo_checks

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


def baseline_summary(configs: pl.DataFrame) -> dict:
    """The runs' baselines in one row: the median over runs of each numeric metric, and how many runs."""
    base = configs.filter("is_reference")
    numeric = [c for c, t in base.schema.items() if t.is_numeric() and c not in ("requests", "generated_tokens")]
    return {
        "runs": base.height,
        **{c: stats.percentile(base[c].to_list(), 50) if base[c].drop_nulls().len() else None for c in numeric},
    }


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
        from workbench.gates import slo_rows

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
                "aa_checks": self.aa_checks.select("variant", "point_id", "metric", "change_pct", "verdict").to_dicts(),
                "slo": {"targets": self.slo, "checks": slo_rows(self.configs, self.recommended, self.slo)},
                "regressions": regressions,
                "warnings": self.warnings,
            }
        )


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
    from workbench import gates

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
            shown.select("run_id", "variant", label=pl.format("{} @ {}", "variant", "point_id")),
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
