"""One run's summary per variant: speed, quality, declared identity, ratios to the baseline, the experiment's own
extras, and each variant's throughput change with its interval and verdict.

`workbench run` prints it and `notebooks/10_experiment.ipynb` shows it:

    rows = run_summary.variant_summaries("quantise", frame)
"""

from __future__ import annotations

from typing import Any

import polars as pl

from workbench import experiments
from workbench.analysis import per_variant


def variant_summaries(name: str, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per variant: speed, quality, declared identity, ratios to the baseline, and the experiment's extras."""
    import json

    from workbench.stats import json_safe

    summary = per_variant.summarise_variants(frame)
    identity = frame.group_by("variant", maintain_order=True).agg(
        pl.col("params_json").first(),
        pl.col("family").drop_nulls().first(),
        pl.col("changes_json").drop_nulls().first(),
    )
    declared = {r["variant"]: r for r in identity.to_dicts()}
    base = next(iter(summary.filter(variant="baseline").to_dicts()), {})
    extras: dict[str, dict[str, Any]] = getattr(experiments.get(name), "summary_extras", lambda f: {})(frame)
    rows = []
    for row in summary.to_dicts():
        info = declared.get(row["variant"], {})
        out = {**json.loads(info.get("params_json") or "{}"), **row, "family": info.get("family")}
        out["changes"] = json.loads(info.get("changes_json") or "{}")
        for metric, ratio in (
            ("decode_tps", "decode_speedup"),
            ("ttft_s", "ttft_ratio"),
            ("throughput_tps", "throughput_ratio"),
        ):
            if base.get(metric) and out.get(metric):
                out[ratio] = out[metric] / base[metric]
        out.update(extras.get(row["variant"], {}))
        rows.append(json_safe(out))
    return rows


SUMMARY_COLUMNS = (
    "variant",
    "family",
    "ttft_s",
    "decode_tps",
    "throughput_tps",
    "peak_mem_bytes",
    "perplexity",
    "task_accuracy",
    "kl_mean",
    "greedy_agreement",
    "identical_to_baseline",
)


def throughput_changes(frame: pl.DataFrame) -> pl.DataFrame:
    """Per variant: its throughput change against the run's baseline, the 95% paired interval over rounds and its
    half-width, the precision reached (the widest relative half-width over the headline metrics), the rounds it
    took and the verdict, printed with its resolution ("inconclusive (±18%)"; `workbench.analysis.verdicts`)."""
    from workbench.analysis import verdicts

    compared = verdicts.speed_comparisons(frame)
    widths = verdicts.precision_by_variant(compared).select("variant", pl.col("precision_pct").alias("_precision"))
    return (
        compared.filter(metric="throughput_tps")
        .join(widths, on="variant", how="left")
        .select(
            "variant",
            pl.col("change_pct").alias("throughput_change_pct"),
            "ci_low_pct",
            "ci_high_pct",
            "half_width_pct",
            pl.col("_precision").alias("precision_pct"),
            "rounds",
            pl.col("label").alias("verdict"),
        )
    )


def summary_table(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The headline columns of `variant_summaries`, with each variant's throughput change, interval and verdict."""
    rows = variant_summaries(name, frame)
    columns = getattr(
        experiments.get(name), "SUMMARY_COLUMNS", SUMMARY_COLUMNS
    )  # an experiment may name its own headline
    table = pl.DataFrame([{k: r.get(k) for k in columns} for r in rows], strict=False)
    return table.join(throughput_changes(frame), on="variant", how="left", maintain_order="left")
