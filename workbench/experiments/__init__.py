"""One module per optimisation; each has a validated config and `run(config) -> polars.DataFrame`.

`summarise(name, frame)` turns an experiment's rows into one summary dict per variant (the
objects `workbench run ... --json` prints), always including the baseline measured in
the same run.
"""

from __future__ import annotations

import importlib
import json
import math

import polars as pl

from workbench import results

MODULES = {
    "quantise": ("quantise", "QuantiseConfig"),
    "distill": ("distill", "DistillConfig"),
    "batching": ("batching", "BatchingConfig"),
    "speculative": ("speculative", "SpeculativeConfig"),
    "prompt_cache": ("prompt_cache", "PromptCacheConfig"),
    "serving": ("serving", "ServingConfig"),
    "tradeoff": ("tradeoff", "TradeoffConfig"),
}
NAMES = tuple(MODULES)


def get(name: str):
    """(config class, run function) of an experiment."""
    if name not in MODULES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(MODULES)}")
    module_name, config_name = MODULES[name]
    module = importlib.import_module(f"workbench.experiments.{module_name}")
    return getattr(module, config_name), module.run


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summarise(name: str, frame: pl.DataFrame) -> list[dict]:
    """One dict per variant: speed, quality, the variant's parameters and experiment-specific figures."""
    summary = results.summarise_variants(frame)
    params = frame.group_by("variant", maintain_order=True).agg(pl.col("params_json").first())
    extra = {v: json.loads(p) for v, p in params.iter_rows()}
    rows = []
    base = summary.filter(variant="baseline").to_dicts()
    base = base[0] if base else {}
    for row in summary.to_dicts():
        out = {k: _clean(v) for k, v in row.items()}
        for key, value in extra.get(row["variant"], {}).items():
            out.setdefault(key, value)
        if base.get("decode_tps") and out.get("decode_tps"):
            out["decode_speedup"] = out["decode_tps"] / base["decode_tps"]
        if base.get("ttft_s") and out.get("ttft_s"):
            out["ttft_ratio"] = out["ttft_s"] / base["ttft_s"]
        if base.get("throughput_tps") and out.get("throughput_tps"):
            out["throughput_ratio"] = out["throughput_tps"] / base["throughput_tps"]
        rows.append(out)
    variant_rows = {r["variant"]: r for r in rows}
    speed = frame.filter(kind="speed")
    if name == "speculative":
        from workbench.experiments.speculative import acceptance_table

        table = acceptance_table(frame)
        for variant, group in table.group_by("variant", maintain_order=True):
            variant_rows[variant[0]]["acceptance_rate"] = group["acceptance_rate"][0]
            variant_rows[variant[0]]["acceptance_by_position"] = group["position_acceptance"].to_list()
    if name == "serving":
        stats = speed.group_by("variant").agg(
            pl.col("cache_hit").mean().alias("hit_rate"),
            pl.col("exact_match").mean().alias("task_accuracy"),
            pl.col("e2e_s").quantile(0.5).alias("e2e_s_p50"),
            pl.col("e2e_s").quantile(0.9).alias("e2e_s_p90"),
            pl.col("e2e_s").quantile(0.99).alias("e2e_s_p99"),
        )
        for stat in stats.to_dicts():
            variant_rows[stat["variant"]].update({k: v for k, v in stat.items() if k != "variant"})
    if name == "batching":
        from workbench.experiments.batching import continuous_report

        for variant, group in speed.filter(pl.col("variant").str.starts_with("continuous")).group_by("variant"):
            p = extra[variant[0]]
            report = continuous_report(group, slo_ttft_s=p["slo_ttft_s"], slo_e2e_s=p["slo_e2e_s"])
            variant_rows[variant[0]]["continuous"] = report.to_dicts()
            variant_rows[variant[0]]["goodput_rps"] = report["goodput_rps"][0]
    return rows
