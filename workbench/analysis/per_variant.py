"""One row per measured configuration (a variant of a run), with what it declares and the quality it has.

- What a variant is comes from its rows (`family`, `changes_json`, `lossless`, `quality_measured`, `dtype`),
  never from its name. Rows without those columns (older sweeps) read as "unknown".
- A variant has the baseline's quality only when it is declared lossless *and* its greedy outputs were
  verified identical to the baseline's; any other quality metric it did not measure is null ("not measured").

`analysis` builds decisions on these rows; `gates` checks them against SLOs and earlier sweeps.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from workbench import stats
from workbench.measure.summary import speed_summary as shared_speed_summary
from workbench.results.store import BASELINE

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
    "point_label": pl.String,  # the sweep point's `label:` (a name, not a parameter)
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
        [summarise_variants(g).with_columns(run_id=pl.lit(run)) for (run,), g in df.group_by("run_id")],
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
    """Per (run, variant): the one speed summary (`measure.summary.speed_summary`) of its speed rows."""
    return shared_speed_summary(with_identity(rows).filter(pl.col("kind") == "speed"), by=["run_id", "variant"])


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


def baseline_summary(configs: pl.DataFrame) -> dict[str, Any]:
    """The runs' baselines in one row: the median over runs of each numeric metric, and how many runs."""
    base = configs.filter("is_reference")
    numeric = [c for c, t in base.schema.items() if t.is_numeric() and c not in ("requests", "generated_tokens")]
    return {
        "runs": base.height,
        **{c: stats.percentile(base[c].to_list(), 50) if base[c].drop_nulls().len() else None for c in numeric},
    }


def summarise_variants(frame: pl.DataFrame | pl.LazyFrame, baseline: str = BASELINE) -> pl.DataFrame:
    """One row per variant, computed from the rows: medians of per-request speed, throughput over the
    trial windows, perplexity, task accuracy (mean exact match), eval score (mean of each item's own metric),
    fidelity, and whether greedy outputs equal the baseline's."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    speed = df.filter(kind="speed")
    per_variant = shared_speed_summary(speed, by=["variant"]).drop("trials")
    quality = df.group_by("variant", maintain_order=True).agg(
        pl.col("nll_mean").filter(pl.col("kind") == "perplexity").mean().exp().alias("perplexity"),
        pl.col("exact_match").filter(pl.col("kind") == "task").mean().alias("task_accuracy"),
        pl.col("token_f1").filter(pl.col("kind") == "task").mean().alias("task_f1"),
        pl.col("score").filter(pl.col("kind") == "task").mean().alias("eval_score"),
        pl.col("kl_mean").filter(pl.col("kind") == "fidelity").mean().alias("kl_mean"),
        (
            (pl.col("greedy_agreement") * pl.col("positions")).filter(pl.col("kind") == "fidelity").sum()
            / pl.col("positions").filter(pl.col("kind") == "fidelity").sum()
        ).alias("greedy_agreement"),
    )
    summary = quality.join(per_variant, on="variant", how="left", maintain_order="left")
    if baseline in set(speed["variant"]):
        keys = ["round", "trial", "request_index"]
        base = speed.filter(variant=baseline).select(*keys, pl.col("output_tokens").alias("_base"))
        same = (
            speed.join(base, on=keys, how="left", nulls_equal=True)
            .group_by("variant")
            .agg(
                pl.when(pl.col("output_tokens").is_null().any() | pl.col("_base").is_null().any())
                .then(None)
                .otherwise((pl.col("output_tokens") == pl.col("_base")).all())
                .alias("identical_to_baseline")
            )
        )
        summary = summary.join(same, on="variant", how="left", maintain_order="left")
    return summary


def lost_items(frame: pl.DataFrame | pl.LazyFrame, baseline: str = BASELINE) -> pl.DataFrame:
    """Per variant, the eval items it scored lower than `baseline` on the same workload: `item_id`, `metric`, both
    scores and both predictions (what a report shows as "the items this variant lost")."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    keys = ["workload_hash", "item_id", "metric"]
    items = df.filter(pl.col("kind") == "task", pl.col("item_id").is_not_null(), pl.col("score").is_not_null())
    items = items.select("variant", *keys, "score", "prediction", "reference")
    base = items.filter(variant=baseline).select(
        *keys, pl.col("score").alias("baseline_score"), pl.col("prediction").alias("baseline_prediction")
    )
    lost = items.filter(pl.col("variant") != baseline).join(base, on=keys, how="inner", maintain_order="left")
    return lost.filter(pl.col("score") < pl.col("baseline_score"))
