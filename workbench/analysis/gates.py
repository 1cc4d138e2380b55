"""The checks a stakeholder or a CI job applies to an analysed sweep: SLO targets, regressions against an earlier
sweep, risks read off the measurements, and warnings about how the sweep was measured.

An SLO file is YAML of `<metric>_max` / `<metric>_min` targets, e.g.

    ttft_s_p90_max: 0.5
    throughput_tps_min: 100
    task_accuracy_min: 0.6
    min_effect: 0.05      # optional: the smallest speed change that matters (a fraction; default 0.05)

A metric that was not measured fails its target: a stakeholder cannot rely on what nobody measured.
`min_effect` is not a target: it sets the practical threshold of the verdicts (better/worse/equivalent).
`quality_margins:` (e.g. `{task_points: 2, perplexity_pct: 1}`) is not a target: it sets the margins of the
quality verdicts (`analysis.quality_compare.QualityMargins`, read by `load_quality_margins`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import polars as pl
from pydantic import ConfigDict, Field, ValidationError, create_model

from workbench import metrics, stats
from workbench.analysis.per_variant import baseline_summary, configurations
from workbench.analysis.quality_compare import QualityMargins, margins_from
from workbench.analysis.significance import HIGHER_IS_BETTER, SAMPLE_METRICS, trial_samples
from workbench.errors import ConfigError
from workbench.slo import checks
from workbench.stats import Difference

DEFAULT_SLO = {"ttft_s_p90_max": 1.0}
CONFIG_METRICS = ("perplexity", "task_accuracy", "kl_mean", "peak_mem_bytes")


_SLO_FIELDS: dict[str, Any] = {
    f"{metric}_{bound}": (float | None, Field(None, allow_inf_nan=False))
    for metric in HIGHER_IS_BETTER
    for bound in ("min", "max")
}
_SLO_FIELDS["min_effect"] = (float | None, Field(None, gt=0, lt=1))
_SLO_FIELDS["quality_margins"] = (QualityMargins | None, None)  # not a target: the margins of the quality verdicts
SLO_FILE = create_model("SLOFile", __config__=ConfigDict(extra="forbid", strict=True), **_SLO_FIELDS)
SLOPath = Path | str | None  # an SLO file, or None for the defaults


def load_slo(path: SLOPath = None) -> dict[str, float]:
    """SLO targets: the defaults, updated from a YAML file of `<metric>_max` / `<metric>_min` numbers."""
    from workbench.yamlfile import read_yaml_mapping

    if path is None:
        return dict(DEFAULT_SLO)
    values = read_yaml_mapping(path, ConfigError)
    try:
        targets = SLO_FILE.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        problem = "unknown SLO target" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(f"{path}:{key}: {problem} (targets: <metric>_min or <metric>_max)") from None
    values = targets.model_dump(exclude_unset=True)
    values.pop("min_effect", None)
    values.pop("quality_margins", None)
    return {**DEFAULT_SLO, **values}


def load_min_effect(path: SLOPath = None) -> float | None:
    """The SLO file's `min_effect` (a fraction), or None: then each run's own (`min_effect` in its params)."""
    if path is None:
        return None
    from workbench.yamlfile import read_yaml_mapping

    load_slo(path)  # the same checks, one line on a bad file
    min_effect: float | None = read_yaml_mapping(path, ConfigError).get("min_effect")
    return min_effect


def load_quality_margins(path: SLOPath = None) -> QualityMargins:
    """The SLO file's `quality_margins:` (docs/quality.md), else the defaults; checked as `load_slo` checks."""
    if path is None:
        return QualityMargins()
    from workbench.yamlfile import read_yaml_mapping

    load_slo(path)
    return margins_from(read_yaml_mapping(path, ConfigError).get("quality_margins"), f"{path}:quality_margins")


def config_name(config: dict[str, Any]) -> str:
    """'8-bit weights, batch 8 (59a23151)': the configuration's human name and the start of its point id."""
    from workbench.names import configuration_name

    name = configuration_name(
        config.get("changes"),
        family=config.get("family"),
        variant=config.get("variant"),
        label=config.get("point_label"),
    )
    return f"{name} ({str(config.get('point_id') or '')[:8]})" if config.get("point_id") else name


def slo_rows(configs: pl.DataFrame, recommended: pl.DataFrame, slo: dict[str, float]) -> list[dict[str, Any]]:
    """SLO checks of the baseline (median over its runs, once) and of each recommended configuration."""
    base = baseline_summary(configs)
    subjects = [(f"baseline (median of {base['runs']} runs)", base)] if base["runs"] else []
    keys = recommended.select("run_id", "variant") if recommended.height else None
    if keys is not None:
        for config in configs.join(keys, on=["run_id", "variant"], how="semi").iter_rows(named=True):
            subjects.append((config_name(config), config))
    return [{"configuration": label, **check} for label, config in subjects for check in checks(config, slo)]


def regressions(
    current: pl.DataFrame | pl.LazyFrame, previous: pl.DataFrame | pl.LazyFrame, *, tolerance: float = 0.10
) -> pl.DataFrame:
    """Each configuration's metrics against the same configuration in an earlier sweep (same point id and
    variant; by variant name alone when no point id matches). A speed metric regresses when it is worse by
    more than `tolerance` and, where both sweeps have two or more trials, its 95% interval excludes zero;
    quality and memory compare the configurations' values against `tolerance` alone."""
    cur_cfg, prev_cfg = configurations(current), configurations(previous)
    keys = ["point_id", "variant"]
    if cur_cfg.is_empty() or prev_cfg.is_empty() or cur_cfg.join(prev_cfg, on=keys, how="semi").is_empty():
        keys = ["variant"]
    cur_s, prev_s = trial_samples(current), trial_samples(previous)
    old_parts = prev_s.partition_by(keys, as_dict=True) if prev_s.height else {}
    out = []
    for key, part in (cur_s.partition_by(keys, as_dict=True) if cur_s.height else {}).items():
        old = old_parts.get(key)
        if old is None:
            continue
        for metric in SAMPLE_METRICS:
            d = stats.difference(old[metric], part[metric])
            out.append(_regression(dict(zip(keys, key)), metric, d.mean_a, d.mean_b, d, tolerance))
    cur_m = cur_cfg.group_by(keys).agg(pl.col(m).mean() for m in CONFIG_METRICS if m in cur_cfg.columns)
    prev_m = prev_cfg.group_by(keys).agg(pl.col(m).mean() for m in CONFIG_METRICS if m in prev_cfg.columns)
    for row in cur_m.join(prev_m, on=keys, suffix="_previous").iter_rows(named=True):
        for metric in CONFIG_METRICS:
            old, new = row.get(f"{metric}_previous"), row.get(metric)
            if old is not None and new is not None and old != 0:
                out.append(_regression({k: row[k] for k in keys}, metric, old, new, None, tolerance))
    schema = {"variant": pl.String, "point_id": pl.String, "metric": pl.String, "previous": pl.Float64}
    schema |= dict.fromkeys(("current", "change_pct", "ci_low_pct", "ci_high_pct"), pl.Float64)
    schema |= {"interval": pl.Boolean, "regression": pl.Boolean, "matched_by": pl.String}
    frame = pl.DataFrame(out, schema=schema).with_columns(pl.col(pl.Float64).fill_nan(None))
    return frame.with_columns(matched_by=pl.lit(" and ".join(keys))).sort(
        "regression", "variant", descending=[True, False]
    )


def _regression(
    key: dict[str, Any], metric: str, old: float, new: float, d: Difference | None, tolerance: float
) -> dict[str, Any]:
    change_pct = (new / old - 1) * 100 if old else math.nan
    worse_pct = -change_pct if HIGHER_IS_BETTER[metric] else change_pct
    ci_pct = d.ci_pct if d is not None and math.isfinite(d.ci_low) else None
    beyond_noise = d.excludes_zero() if d is not None and ci_pct is not None else True
    return {
        "variant": key["variant"],
        "point_id": key.get("point_id"),
        "metric": metric,
        "previous": old,
        "current": new,
        "change_pct": change_pct,
        "ci_low_pct": ci_pct[0] if ci_pct else None,
        "ci_high_pct": ci_pct[1] if ci_pct else None,
        "interval": ci_pct is not None,
        "regression": bool(worse_pct > tolerance * 100 and beyond_noise),
    }


def risks(
    configs: pl.DataFrame,
    *,
    failures: int = 0,
    points: int = 0,
    memory_total_bytes: int | None = None,
    quality_intervals: bool = False,
) -> pl.DataFrame:
    """Risk / evidence / mitigation rows read off the measurements, each configuration against its own run's
    baseline. With `quality_intervals` (paired quality verdicts exist: `verdict_risks.quality_risks`) the
    point-estimate quality rows are left out; without, they say that they have no interval."""
    out = []
    no_interval = "" if quality_intervals else " (a point estimate: no paired interval measured)"
    base = configs.filter("is_reference").select("run_id", _ppl="perplexity", _acc="task_accuracy")
    for c in configs.filter(~pl.col("is_reference")).join(base, on="run_id", how="left").iter_rows(named=True):
        name = config_name(c)
        if quality_intervals:
            pass
        elif c.get("perplexity") and c.get("_ppl") and c["perplexity"] / c["_ppl"] - 1 > 0.02:
            delta = c["perplexity"] / c["_ppl"] - 1
            out.append(
                (
                    f"{name}: perplexity +{delta:.1%}",
                    f"held-out perplexity {c['perplexity']:.2f} vs {c['_ppl']:.2f}{no_interval}",
                    "use more bits or a calibrated method (GPTQ/AWQ)",
                )
            )
        if quality_intervals:
            pass
        elif c.get("task_accuracy") is not None and c.get("_acc") is not None and c["task_accuracy"] < c["_acc"] - 0.02:
            out.append(
                (
                    f"{name}: task accuracy {c['task_accuracy'] - c['_acc']:+.1%}",
                    f"exact match {c['task_accuracy']:.1%} vs {c['_acc']:.1%}{no_interval}",
                    "gate on a task-accuracy SLO; keep the baseline for hard requests (tiering)",
                )
            )
        if c.get("kl_mean") and c["kl_mean"] > 0.05:
            agreement = c.get("greedy_agreement")
            evidence = f"KL {c['kl_mean']:.3f}" + (
                f", greedy agreement {agreement:.1%}" if agreement is not None else ""
            )
            out.append((f"{name}: output drift", evidence, "review generations; prefer variants with KL < 0.05"))
        if c.get("lossless") and c.get("identical_to_baseline") is False:
            out.append(
                (
                    f"{name}: declared lossless, but outputs differ",
                    "greedy tokens differ from the baseline's on the benchmark prompts",
                    "investigate numerics before relying on the baseline's quality",
                )
            )
        if memory_total_bytes and c.get("peak_mem_bytes") and c["peak_mem_bytes"] > 0.8 * memory_total_bytes:
            out.append(
                (
                    f"{name}: memory headroom",
                    f"peak {c['peak_mem_bytes'] / 2**30:.2f} GiB of {memory_total_bytes / 2**30:.1f} GiB",
                    "lower batch size or quantise",
                )
            )
    if failures:
        out.append((f"{failures} of {points} sweep points failed", "error.json in their folders", "re-run the sweep"))
    return pl.DataFrame(out, schema=["risk", "evidence", "mitigation"], orient="row")


def measurement_warnings(
    configs: pl.DataFrame, floor: dict[str, dict[str, Any]], objective: str, conditions: pl.DataFrame | None = None
) -> list[str]:
    """What a reader must know about how the numbers were taken (noise floor, overlap, load, dtypes)."""
    out = []
    if floor.get(objective, {}).get("median_pct") is None:
        out.append(
            "No run measured its baseline in two or more rounds: there is no paired interval, so every verdict is "
            "inconclusive and nothing is recommended."
        )
    dtypes = sorted(configs["dtype"].drop_nulls().unique()) if "dtype" in configs.columns else []
    if len(dtypes) > 1:
        out.append(f"Configurations ran in different dtypes ({', '.join(dtypes)}): comparisons mix dtype effects.")
    undeclared = configs.filter(~pl.col("is_reference") & (pl.col("family") == "unknown")).height
    if undeclared:
        out.append(
            f"{undeclared} configurations do not declare their family or losslessness (older sweep): they are "
            "shown with the quality they measured and nothing else."
        )
    base = configs.filter("is_reference")[objective].drop_nulls() if objective in configs.columns else pl.Series()
    mean = cast(float | None, base.mean())  # a numeric column's mean (polars types it as any Python literal)
    if len(base) >= 3 and mean:
        out.append(
            f"The baseline's {metrics.BY_NAME[objective].label.lower()} varies {cast(float, base.std()) / mean:.0%} "
            "(coefficient "
            f"of variation) across its {len(base)} runs."
        )
    if conditions is not None and conditions.height:
        overlapped = conditions.filter(pl.col("workers").fill_null(1) > 1)
        if overlapped.height:
            out.append(
                f"{overlapped.height} of {conditions.height} points ran with more than one worker: timed points "
                "overlapped, so their timings are contended."
            )
        # the 1-minute load before a point still carries the previous point's own work (about one busy core),
        # so a point is flagged only when more was running than the machine has cores
        per_core = conditions.select(pl.col("load_before") / pl.col("cores").cast(pl.Float64)).to_series()
        busy = per_core.drop_nulls().filter(per_core.drop_nulls() > 1.0)
        if len(busy):
            out.append(
                f"{len(busy)} of {conditions.height} points started on a busy machine "
                f"(load up to {cast(float, busy.max()):.2f} per core before the point ran)."
            )
    return out
