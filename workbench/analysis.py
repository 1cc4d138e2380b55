"""From a sweep's rows to decisions: configurations, Pareto front, measured gains with confidence
intervals, SLO checks, risks and regressions. Pure functions over polars frames; no plotting.

Every figure is computed from the per-request rows of finished points, so each number in
a report traces back to a results.parquet.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl

from workbench import results

HIGHER_IS_BETTER = {
    "throughput_tps": True,
    "decode_tps": True,
    "task_accuracy": True,
    "ttft_s": False,
    "ttft_s_p90": False,
    "e2e_s": False,
    "perplexity": False,
    "kl_mean": False,
    "peak_mem_bytes": False,
}


def family(params: dict) -> str:
    """Optimisation family of a configuration, from its parameters."""
    parts = []
    if params.get("bits"):
        parts.append("quantisation")
    if (params.get("batch_size") or 1) > 1:
        parts.append("batching")
    if params.get("speculative"):
        parts.append("speculative")
    return "+".join(parts) or "baseline"


def configurations(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (run, variant): summary metrics, parameters, family. Baselines of every run are kept."""
    df = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
    out = []
    for (run_id,), group in df.group_by("run_id", maintain_order=True):
        summary = results.summarise_variants(group)
        params = dict(group.group_by("variant").agg(pl.col("params_json").first()).iter_rows())
        point = group["point_id"][0] if "point_id" in group.columns else run_id
        for row in summary.to_dicts():
            p = json.loads(params.get(row["variant"]) or "{}")
            out.append(
                {
                    "run_id": run_id,
                    "point_id": point,
                    **row,
                    "family": family(p) if row["variant"] != "baseline" else "baseline",
                    "params": json.dumps(p, sort_keys=True, default=str),
                }
            )
    frame = pl.DataFrame(out, infer_schema_length=None)
    return _inherit_baseline_quality(frame)


QUALITY_COLUMNS = ("perplexity", "task_accuracy", "task_f1", "kl_mean", "greedy_agreement")


def _inherit_baseline_quality(frame: pl.DataFrame) -> pl.DataFrame:
    """Batching and speculative decoding leave the weights alone, so a variant measured without quality rows
    (and without quantisation) has its run's baseline quality; KL 0 and agreement 1 by construction."""
    if frame.is_empty():
        return frame
    cols = [c for c in QUALITY_COLUMNS if c in frame.columns]
    base = frame.filter(pl.col("variant") == "baseline").select("run_id", *[pl.col(c).alias(f"_b_{c}") for c in cols])
    same_weights = (
        ~pl.col("family").str.contains("quantisation")
        & (pl.col("variant") != "baseline")
        & pl.col("variant").str.starts_with("student").not_()
    )
    frame = frame.join(base, on="run_id", how="left")
    exact = {"kl_mean": 0.0, "greedy_agreement": 1.0}
    return frame.with_columns(
        pl.when(same_weights & pl.col(c).is_null())
        .then(pl.lit(exact[c]) if c in exact else pl.col(f"_b_{c}"))
        .otherwise(pl.col(c))
        .alias(c)
        for c in cols
    ).drop([f"_b_{c}" for c in cols])


def pareto_mask(df: pl.DataFrame, objectives: dict[str, bool]) -> list[bool]:
    """True where no other row is at least as good on every objective and better on one."""
    values = np.array([[(v if v is not None else np.nan) for v in df[c].to_list()] for c in objectives], dtype=float).T
    signs = np.array([1.0 if up else -1.0 for up in objectives.values()])
    scores = values * signs
    mask = []
    for i, row in enumerate(scores):
        if np.isnan(row).any():
            mask.append(False)
            continue
        dominated = any(
            np.all(other >= row) and np.any(other > row)
            for j, other in enumerate(scores)
            if j != i and not np.isnan(other).any()
        )
        mask.append(not dominated)
    return mask


def with_pareto(configs: pl.DataFrame, quality: str = "task_accuracy") -> pl.DataFrame:
    objectives = {"ttft_s_p90": False, "throughput_tps": True, quality: HIGHER_IS_BETTER.get(quality, True)}
    return configs.with_columns(pl.Series("pareto", pareto_mask(configs, objectives)))


def compare(rows: pl.DataFrame, run_id: str, variant: str, metric: str, baseline: str = "baseline") -> dict:
    """Measured change of `metric` (per-request rows) from the run's baseline: ratio, difference and its 95% CI.
    `significant` is False when the interval of the difference contains zero."""
    speed = rows.filter((pl.col("run_id") == run_id) & (pl.col("kind") == "speed"))

    def samples(name):
        part = speed.filter(variant=name)
        if metric == "throughput_tps":  # one value per trial: tokens over the trial's window
            per_trial = part.group_by("trial").agg(
                (pl.col("generated_tokens").sum() / pl.col("window_s").first()).alias("v")
            )
            return per_trial["v"].drop_nulls().to_numpy()
        return part[metric].drop_nulls().to_numpy()

    a, b = samples(baseline), samples(variant)
    if a.size < 2 or b.size < 2:
        return {"metric": metric, "ratio": math.nan, "diff": math.nan, "ci": (math.nan, math.nan), "significant": False}
    diff = float(b.mean() - a.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    half = 1.96 * se
    return {
        "metric": metric,
        "ratio": float(b.mean() / a.mean()) if a.mean() else math.nan,
        "diff": diff,
        "ci": (diff - half, diff + half),
        "significant": abs(diff) > half,
    }


def load_slo(path=None) -> dict:
    """SLO targets; keys `ttft_s_p90_max`, `throughput_tps_min`, `task_accuracy_min`, `perplexity_max`."""
    from workbench.paths import read_yaml_mapping

    defaults = {"ttft_s_p90_max": 1.0, "throughput_tps_min": 0.0, "task_accuracy_min": 0.0}
    if path is None:
        return defaults
    values = read_yaml_mapping(path)
    unknown = set(values) - {"ttft_s_p90_max", "throughput_tps_min", "task_accuracy_min", "perplexity_max"}
    if unknown:
        raise ValueError(f"{path}:{sorted(unknown)[0]}: unknown SLO key")
    return {**defaults, **values}


def slo_checks(config: dict, slo: dict) -> list[dict]:
    checks = []
    for key, target in slo.items():
        metric, bound = key.rsplit("_", 1)
        value = config.get(metric)
        ok = value is not None and (value <= target if bound == "max" else value >= target)
        checks.append({"target": key, "threshold": target, "value": value, "pass": bool(ok)})
    return checks


def recommendations(
    rows: pl.DataFrame, configs: pl.DataFrame, slo: dict, objective: str = "throughput_tps"
) -> pl.DataFrame:
    """Pareto-optimal configurations that meet every SLO, ranked by `objective`, each with its measured change
    against the baseline of its own run. Differences within noise are reported as such, not ranked."""
    out = []
    for config in configs.filter(pl.col("pareto") & (pl.col("variant") != "baseline")).to_dicts():
        if not all(c["pass"] for c in slo_checks(config, slo)):
            continue
        base = configs.filter((pl.col("run_id") == config["run_id"]) & (pl.col("variant") == "baseline")).to_dicts()
        metric = objective if objective in ("throughput_tps", "decode_tps", "ttft_s", "e2e_s") else "e2e_s"
        change = compare(rows, config["run_id"], config["variant"], metric)
        base_obj = base[0].get(objective) if base else None
        gain = config[objective] / base_obj - 1 if base_obj else math.nan
        out.append(
            {
                "variant": config["variant"],
                "family": config["family"],
                "point_id": config["point_id"],
                objective: config[objective],
                f"{objective}_gain": gain,
                "ttft_s_p90": config["ttft_s_p90"],
                "task_accuracy": config.get("task_accuracy"),
                "perplexity": config.get("perplexity"),
                "evidence_metric": metric,
                "change": change["diff"],
                "ci_low": change["ci"][0],
                "ci_high": change["ci"][1],
                "verdict": "significant" if change["significant"] else "no significant difference",
            }
        )
    frame = pl.DataFrame(out) if out else pl.DataFrame(schema={"variant": pl.String, "verdict": pl.String})
    if out:
        frame = frame.sort([pl.col("verdict") == "significant", objective], descending=True)
    return frame


def risks(
    configs: pl.DataFrame, *, failures: int = 0, points: int = 0, memory_total_bytes: int | None = None
) -> pl.DataFrame:
    """Risk / mitigation rows derived from the measurements, each with its evidence."""
    out = []
    base = configs.filter(pl.col("variant") == "baseline")
    base_ppl = base["perplexity"].drop_nulls().mean() if "perplexity" in base.columns else None
    base_acc = base["task_accuracy"].drop_nulls().mean() if "task_accuracy" in base.columns else None
    for c in configs.filter(pl.col("variant") != "baseline").to_dicts():
        if c.get("perplexity") and base_ppl:
            delta = c["perplexity"] / base_ppl - 1
            if delta > 0.02:
                out.append(
                    {
                        "risk": f"{c['variant']}: perplexity +{delta:.1%}",
                        "evidence": f"held-out perplexity {c['perplexity']:.2f} vs {base_ppl:.2f}",
                        "mitigation": "use more bits or a calibrated method (GPTQ/AWQ)",
                    }
                )
        if c.get("task_accuracy") is not None and base_acc is not None and c["task_accuracy"] < base_acc - 0.02:
            out.append(
                {
                    "risk": f"{c['variant']}: task accuracy {c['task_accuracy'] - base_acc:+.1%}",
                    "evidence": f"exact match {c['task_accuracy']:.1%} vs {base_acc:.1%}",
                    "mitigation": "gate on a task-accuracy SLO; keep the baseline for hard requests (tiering)",
                }
            )
        if c.get("kl_mean") and c["kl_mean"] > 0.05:
            out.append(
                {
                    "risk": f"{c['variant']}: output drift",
                    "evidence": f"KL {c['kl_mean']:.3f}, greedy "
                    f"agreement {c.get('greedy_agreement') or float('nan'):.1%}",
                    "mitigation": "review generations; prefer variants with KL < 0.05",
                }
            )
        if c.get("identical_to_baseline") is False and c["family"] in ("batching", "speculative"):
            out.append(
                {
                    "risk": f"{c['variant']}: outputs differ from baseline",
                    "evidence": "greedy tokens differ on the benchmark prompts",
                    "mitigation": "investigate numerics",
                }
            )
        if memory_total_bytes and c.get("peak_mem_bytes") and c["peak_mem_bytes"] > 0.8 * memory_total_bytes:
            out.append(
                {
                    "risk": f"{c['variant']}: memory headroom",
                    "evidence": f"peak {c['peak_mem_bytes'] / 2**30:.2f} GiB of {memory_total_bytes / 2**30:.1f} GiB",
                    "mitigation": "lower batch size or quantise",
                }
            )
    if failures:
        out.append(
            {
                "risk": f"{failures} of {points} sweep points failed",
                "evidence": "error.json in their folders",
                "mitigation": "re-run the sweep; failed points run again",
            }
        )
    return (
        pl.DataFrame(out)
        if out
        else pl.DataFrame(schema={"risk": pl.String, "evidence": pl.String, "mitigation": pl.String})
    )


def regressions(current: pl.DataFrame, previous: pl.DataFrame, *, tolerance: float = 0.10) -> pl.DataFrame:
    """Metrics of each variant worse than in the previous sweep by more than `tolerance` (relative)."""
    metrics = [m for m in HIGHER_IS_BETTER if m in current.columns and m in previous.columns]
    prev = previous.group_by("variant").agg(*[pl.col(m).mean() for m in metrics])
    cur = current.group_by("variant").agg(*[pl.col(m).mean() for m in metrics])
    out = []
    for row in cur.join(prev, on="variant", suffix="_previous").to_dicts():
        for m in metrics:
            new, old = row.get(m), row.get(f"{m}_previous")
            if new is None or old is None or old == 0:
                continue
            change = new / old - 1
            worse = -change if HIGHER_IS_BETTER[m] else change
            out.append(
                {
                    "variant": row["variant"],
                    "metric": m,
                    "previous": old,
                    "current": new,
                    "change": change,
                    "regression": worse > tolerance,
                }
            )
    return pl.DataFrame(out) if out else pl.DataFrame(schema={"variant": pl.String, "regression": pl.Boolean})
