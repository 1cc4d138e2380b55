"""Paired speed comparisons with four verdicts, Holm-corrected across a sweep: what `report` and CI read.

- The unit is a round (`results.rounds.round_samples`): per round, the variant's value against the same run's
  baseline in the same round, as a log ratio; the 95% trimmed-mean (Yuen) t interval over rounds,
  back-transformed to a relative change (`stats.paired_change`). Trials in a round are averaged first.
- Each (point, variant, metric) gets `stats.verdict` against `min_effect` (the SLO file's `min_effect`, else
  the run's `min_effect` from its rows, else `stats.MIN_EFFECT`): better / worse / equivalent / inconclusive.
- `significant` is decided by Holm's step-down correction over every speed comparison of the sweep
  (family-wise error <= 5%); a better/worse verdict whose comparison is not significant after the correction
  reads "inconclusive". An equivalence verdict needs no correction: it can only be harder to reach.
- A/A copies (family `baseline`, not the reference) are the check of the method: one that comes out better or
  worse means the noise model is wrong, and the report says so.

Quality comparisons (paired on items) come from `analysis.quality_compare` when it is present
(`quality_comparisons`); nothing here invents a quality interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench import stats
from workbench.results import rounds as round_stats

if TYPE_CHECKING:
    from workbench.analysis.quality_compare import QualityMargins

SPEED_METRICS = ("throughput_tps", "ttft_s", "e2e_s", "decode_tps")
ALPHA = 0.05
SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "run_id": pl.String,
    "point_id": pl.String,
    "variant": pl.String,
    "family": pl.String,
}
SCHEMA |= {"metric": pl.String, "unit": pl.String}
SCHEMA |= {"precision_target_pct": pl.Float64}
SCHEMA |= dict.fromkeys(
    ["baseline_mean", "mean", "change", "ci_low", "ci_high", "change_pct", "ci_low_pct", "ci_high_pct"], pl.Float64
)
SCHEMA |= dict.fromkeys(
    ["half_width_pct", "precision_pct", "gain_pct", "p_value", "p_holm", "sd_log", "min_effect_pct"], pl.Float64
)
SCHEMA |= {"rounds": pl.Int64, "outlier_rounds": pl.Int64, "rounds_stopped": pl.String}
SCHEMA |= {"significant": pl.Boolean, "verdict": pl.String, "label": pl.String}


def run_min_effects(rows: pl.DataFrame) -> dict[str, float]:
    """run_id -> the `min_effect` its rows recorded (runs that did not record one are absent)."""
    return _run_facts(rows, "min_effect")


def _run_facts(rows: pl.DataFrame, column: str) -> dict[str, Any]:
    """run_id -> the first non-null value of `column` in its rows (runs without one are absent)."""
    if column not in rows.columns:
        return {}
    found = rows.filter(pl.col(column).is_not_null()).group_by("run_id").agg(pl.col(column).first())
    return dict(zip(found["run_id"].to_list(), found[column].to_list()))


def speed_comparisons(
    rows: pl.DataFrame, *, min_effect: float | None = None, metrics: Sequence[str] = SPEED_METRICS, alpha: float = ALPHA
) -> pl.DataFrame:
    """One row per (run, point, variant, metric): the paired change against the run's baseline, its interval
    and half-width (percent), rounds, Holm-corrected `significant` and the `verdict` (with its `label`, e.g.
    "inconclusive (±18%)"). `min_effect` (a fraction) overrides what the runs recorded."""
    samples = round_stats.round_samples(rows)
    if samples.is_empty() or "throughput_tps" not in samples.columns:
        return pl.DataFrame(schema=SCHEMA)
    effects, stopped, targets = (
        run_min_effects(rows),
        _run_facts(rows, "rounds_stopped"),
        _run_facts(rows, "precision_target"),
    )
    outliers = round_stats.outlier_rounds(samples)
    family = dict(zip(zip(samples["run_id"], samples["variant"]), samples["family"]))
    out = []
    for metric in metrics:
        means = samples.group_by("run_id", "point_id", "variant").agg(pl.col(metric).mean())
        mean_of = {(r["run_id"], r["point_id"], r["variant"]): r[metric] for r in means.iter_rows(named=True)}
        for (run_id, point_id, variant), change in round_stats.paired(samples, metric).items():
            effect = min_effect if min_effect is not None else effects.get(run_id, stats.MIN_EFFECT)
            base = mean_of.get((run_id, point_id, round_stats.BASELINE))
            out.append(
                {
                    "run_id": run_id,
                    "point_id": point_id,
                    "variant": variant,
                    "family": family.get((run_id, variant)),
                    "metric": metric,
                    "unit": "pct",
                    "baseline_mean": base,
                    "mean": mean_of.get((run_id, point_id, variant)),
                    "rounds": change.rounds,
                    "outlier_rounds": sum(1 for run, _ in outliers if run == run_id),
                    "rounds_stopped": stopped.get(run_id),
                    "p_value": change.p_value,
                    "sd_log": change.sd_log,
                    "min_effect_pct": effect * 100,
                    "precision_target_pct": targets[run_id] * 100 if run_id in targets else None,
                    **_absolute(change, base),
                    **change.to_pct(),
                    "gain_pct": (1 if round_stats.HIGHER_IS_BETTER[metric] else -1) * change.change * 100,
                }
            )
    frame = pl.DataFrame(out, schema={k: v for k, v in SCHEMA.items() if k not in ("p_holm", "significant")})
    return with_verdicts(frame.with_columns(pl.col(pl.Float64).fill_nan(None)), alpha=alpha)


def _absolute(change: stats.PairedChange, base: float | None) -> dict[str, float]:
    scale = base if base is not None and math.isfinite(base) else math.nan
    return {"change": change.change * scale, "ci_low": change.ci_low * scale, "ci_high": change.ci_high * scale}


def with_verdicts(frame: pl.DataFrame, *, alpha: float = ALPHA) -> pl.DataFrame:
    """Holm over the frame's comparisons, then each row's verdict and its printed label."""
    adjusted = stats.holm(frame["p_value"].to_list()) if frame.height else []
    verdicts, labels, significant = [], [], []
    for row, p_holm in zip(frame.iter_rows(named=True), adjusted):
        sig = math.isfinite(p_holm) and p_holm < alpha
        low, high = (row["ci_low_pct"], row["ci_high_pct"])
        low, high = (math.nan if low is None else low), (math.nan if high is None else high)
        up = round_stats.HIGHER_IS_BETTER.get(row["metric"], True)
        verdict = stats.verdict(low, high, min_effect=row["min_effect_pct"], higher_is_better=up)
        if verdict in ("better", "worse") and not sig:
            verdict = "inconclusive"
        verdicts.append(verdict)
        significant.append(sig)
        precision, target = row.get("precision_pct"), row.get("precision_target_pct")
        short_of = precision if precision is not None and target is not None and precision > target else None
        labels.append(verdict_label(verdict, row["half_width_pct"], row["min_effect_pct"], short_of=short_of))
    return frame.with_columns(
        pl.Series("p_holm", adjusted, dtype=pl.Float64).fill_nan(None),
        pl.Series("significant", significant, dtype=pl.Boolean),
        pl.Series("verdict", verdicts, dtype=pl.String),
        pl.Series("label", labels, dtype=pl.String),
    ).select(list(SCHEMA))


def verdict_label(
    verdict: str, half_width_pct: float | None, min_effect_pct: float | None, *, short_of: float | None = None
) -> str:
    """How a verdict is printed: "inconclusive (±18%)", "equivalent (within ±5%)", "better"; a better or worse
    verdict whose precision (`short_of`, the relative half-width) is wider than its run's target says so:
    "worse (±7.0% of the ratio)", so a clear but coarse verdict is never read as one measured to the target."""
    if verdict == "inconclusive":
        width = "no interval" if half_width_pct is None or not math.isfinite(half_width_pct) else None
        return f"inconclusive ({width or f'±{half_width_pct:.2g}%'})"
    if verdict == "equivalent" and min_effect_pct is not None:
        return f"equivalent (within ±{min_effect_pct:g}%)"
    if short_of is not None and math.isfinite(short_of):
        return f"{verdict} (±{short_of:.2g}% of the ratio)"
    return verdict


def aa_checks(compared: pl.DataFrame, configs: pl.DataFrame) -> pl.DataFrame:
    """The comparisons of A/A copies (the baseline's settings measured as a variant), `flagged` where one came
    out better or worse: then the noise model is wrong and no verdict of the sweep should be trusted."""
    copies = configs.filter(~pl.col("is_reference") & (pl.col("family") == round_stats.BASELINE))
    found = compared.join(copies.select("run_id", "variant"), on=["run_id", "variant"], how="semi")
    return found.with_columns(flagged=pl.col("verdict").is_in(["better", "worse"])).sort(
        "point_id", "variant", "metric"
    )


def quality_comparisons(rows: pl.DataFrame, margins: QualityMargins | None = None) -> pl.DataFrame | None:
    """The paired quality comparisons of `analysis.quality_compare` (issue 16, quality side), or None while that
    module is not in this tree: quality then shows its point values and no interval is claimed. `margins`: None
    for the defaults."""
    try:
        from workbench.analysis import quality_compare
    except ImportError:
        return None
    return quality_compare.quality_comparisons(rows, margins=margins)


def precision_by_variant(compared: pl.DataFrame, metrics: Sequence[str] = round_stats.HEADLINE) -> pl.DataFrame:
    """Per (point, variant): the widest half-width and the widest relative half-width (`precision_pct`, what a
    precision target is checked against) over the headline metrics, the rounds it took and why the run stopped
    (what the summary and the report say about resolution)."""
    if compared.is_empty():
        return pl.DataFrame(schema={"run_id": pl.String, "point_id": pl.String, "variant": pl.String})
    return (
        compared.filter(pl.col("metric").is_in(list(metrics)))
        .group_by("run_id", "point_id", "variant", maintain_order=True)
        .agg(
            pl.col("half_width_pct").max(),
            pl.col("precision_pct").max(),
            pl.col("rounds").max(),
            pl.col("rounds_stopped").first(),
            pl.col("outlier_rounds").first(),
        )
    )


COMPARISON_FIELDS: tuple[str, ...] = (
    "point_id",
    "variant",
    "params",
    "metric",
    "change_pct",
    "ci_low_pct",
    "ci_high_pct",
)
COMPARISON_FIELDS += ("half_width_pct", "rounds", "verdict", "significant", "min_effect_pct")


def comparisons_json(
    compared: pl.DataFrame, configs: pl.DataFrame, quality: pl.DataFrame | None
) -> list[dict[str, Any]]:
    """`report --json`'s `comparisons`: one entry per (point, variant, metric), speed and quality alike, with
    `COMPARISON_FIELDS` (+ `kind` and `unit`: a quality change in "points" is percentage points, not percent),
    speed first, then by point, variant and metric, so two reports of one sweep list them in the same order."""
    import json

    params = {}
    if configs.height and "params" in configs.columns:
        params = {(r["point_id"], r["variant"]): json.loads(r["params"] or "{}") for r in configs.iter_rows(named=True)}
    out = [
        {
            **{k: r[k] for k in COMPARISON_FIELDS if k != "params"},
            "params": params.get((r["point_id"], r["variant"]), {}),
            "precision_pct": r["precision_pct"],
            "kind": "speed",
            "unit": "pct",
        }
        for r in compared.iter_rows(named=True)
    ]
    if quality is not None and quality.height:
        adjusted = stats.holm(quality["p_value"].to_list())  # quality is its own family (speed's is not widened)
        for r, p_holm in zip(quality.iter_rows(named=True), adjusted):
            margin = r.get("margin")
            out.append(
                {
                    "point_id": r.get("point_id"),
                    "variant": r["variant"],
                    "params": params.get((r.get("point_id"), r["variant"]), {}),
                    "metric": r["metric"],
                    "change_pct": r["change"],
                    "ci_low_pct": r["ci_low"],
                    "ci_high_pct": r["ci_high"],
                    "half_width_pct": r["half_width"],
                    "rounds": None,
                    "n": r.get("n"),
                    "verdict": r["verdict"],
                    "significant": bool(math.isfinite(p_holm) and p_holm < ALPHA),
                    "min_effect_pct": margin,
                    "kind": "quality",
                    "unit": r.get("unit"),
                }
            )
    order = {metric: i for i, metric in enumerate(SPEED_METRICS)}  # the same sweep gives the same list, in order
    return sorted(
        out,
        key=lambda c: (c["kind"] != "speed", str(c["point_id"]), c["variant"], order.get(c["metric"], 99), c["metric"]),
    )


def method_warnings(compared: pl.DataFrame, aa: pl.DataFrame) -> list[str]:
    """What a reader must know about the verdicts themselves: A/A copies that were not equivalent-or-inconclusive
    (the noise model is wrong), runs too short for a paired interval, flagged rounds, budgets spent."""
    out = []
    for r in aa.filter("flagged").iter_rows(named=True):
        out.append(
            f"A/A check failed: {r['variant']} [{str(r['point_id'])[:8]}] came out {r['verdict']} on "
            f"{r['metric']} ({r['change_pct']:+.1f}%): the noise model is wrong, so read every verdict with care."
        )
    if compared.is_empty():
        return out
    runs = compared.group_by("run_id").agg(pl.col("rounds").max(), pl.col("outlier_rounds").first())
    short = runs.filter(pl.col("rounds") < 3).height
    if short:
        out.append(
            f"{short} of {runs.height} runs have fewer than 3 rounds: a paired interval over 2 rounds has one degree "
            "of freedom (t = 12.7), so their verdicts are mostly inconclusive; set `precision` in the params."
        )
    flagged = int(runs["outlier_rounds"].fill_null(0).sum())
    if flagged:
        out.append(
            f"{flagged} rounds are flagged as outliers (the baseline beyond {round_stats.OUTLIER_MADS:g} scaled MADs "
            "of its run's rounds); they are kept in every interval."
        )
    budget = compared.filter(pl.col("rounds_stopped") == "time budget")["point_id"].unique().to_list()
    if budget:
        out.append(f"{len(budget)} points stopped when their time budget was spent, before reaching the precision.")
    return out


def summary_line(compared: pl.DataFrame) -> str:
    """One line for a report's overview: how many comparisons got each verdict, and the threshold they used."""
    counts = dict(compared.group_by("verdict").len().iter_rows()) if compared.height else {}
    effects = compared["min_effect_pct"].drop_nulls().unique().to_list() if compared.height else []
    effect = ", ".join(f"±{e:g}%" for e in sorted(effects)) or "none"
    parts = ", ".join(f"{counts.get(v, 0)} {v}" for v in stats.VERDICTS)
    return f"{compared.height} paired speed comparisons ({parts}); practical threshold {effect}, Holm-corrected"
