"""Quality comparisons with intervals, each variant paired with its baseline on the same items, chunks and prompts.

A quality claim ("quality kept", "−10 points of accuracy") is a claim about the items a user did not measure, so
every one carries a 95% interval and a verdict against a stated margin (docs/quality.md):

- task scores (exact match, token F1, an eval set's own metric): the per-item difference variant − baseline on
  the same items (`workload_hash`, `item_id`), with Bonett and Price's adjusted Wald interval (two pseudo-items,
  one gained and one lost, are added: it keeps its nominal coverage when few or no items flip, where a bootstrap
  over items shrinks to a point); 0/1 scores also get McNemar's exact p-value (the items only one got right);
- perplexity: the ratio exp(mean NLL variant − mean NLL baseline) from per-chunk NLL sums on the same chunks, a
  Student t interval over chunks on the log ratio (delta method), shown in percent;
- KL(baseline ‖ variant) and greedy agreement (already paired: both models read the same sequences): a Student t
  interval clustered by prompt (positions within a prompt are correlated). KL is shown as the excess perplexity
  it means, 100·(exp(KL) − 1) percent, so its margin reads like perplexity's.

A verdict is `stats.verdict` on the interval against the metric's margin (`QualityMargins`): "equivalent" is
"quality kept". Chunks and prompts whose values are identical to the baseline's (the same computation) give a
zero-width interval, and `format_quality` says "no change on N chunks".

    from workbench.analysis.quality_compare import quality_comparisons, format_quality
    rows = store.load_sweep_results("default").collect()
    for row in quality_comparisons(rows).iter_rows(named=True): print(row["variant"], format_quality(row))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench import stats
from workbench.errors import ConfigError
from workbench.results.store import BASELINE

COLUMNS = {
    "point_id": pl.String,
    "variant": pl.String,
    "metric": pl.String,
    "unit": pl.String,
    "change": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "half_width": pl.Float64,
    "n": pl.Int64,
    "method": pl.String,
    "p_value": pl.Float64,
    "margin": pl.Float64,
    "verdict": pl.String,
}
TASK_COLUMNS = {"task_accuracy": "exact_match", "task_f1": "token_f1"}
HIGHER_IS_BETTER = {"perplexity": False, "kl_mean": False, "greedy_agreement": True}
HEADLINE = ("task_accuracy", "perplexity")  # what "quality kept" of a configuration rests on by default


class QualityMargins(BaseModel):
    """How large a quality change matters (the `min_effect` of a quality verdict), and how intervals are made.

    Defaults: 1 point of a task score (exact match, F1, an eval metric; 1 item in 100), 1% of perplexity, 1% of
    excess perplexity from KL (KL ≈ 0.01 nats), 2 points of greedy agreement (near-ties flip argmaxes without
    changing answers). Set them under `quality_margins:` in the SLO file (`gates.load_quality_margins`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_points: float = Field(1.0, ge=0, le=100)
    perplexity_pct: float = Field(1.0, ge=0, le=1000)
    kl_pct: float = Field(1.0, ge=0, le=1000)
    agreement_points: float = Field(2.0, ge=0, le=100)
    level: float = Field(stats.LEVEL, gt=0.5, lt=1)

    def margin(self, metric: str) -> float:
        if metric == "perplexity":
            return self.perplexity_pct
        if metric == "kl_mean":
            return self.kl_pct
        if metric == "greedy_agreement":
            return self.agreement_points
        return self.task_points


def margins_from(values: Mapping[str, Any] | None, where: str = "quality_margins") -> QualityMargins:
    """Margins from a mapping (a params or SLO file's `quality_margins:`); a bad key or value is one `ConfigError`
    naming `where.key`."""
    try:
        return QualityMargins.model_validate(dict(values or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        problem = "unknown margin" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(f"{where}.{key}: {problem} (margins: {', '.join(QualityMargins.model_fields)})") from None


def quality_comparisons(frame: pl.DataFrame | pl.LazyFrame, *, margins: QualityMargins | None = None) -> pl.DataFrame:
    """One row per (point, variant, quality metric) measured on both the variant and its point's baseline (the
    variant named "baseline" of the same `point_id`, or of the same run when rows have no `point_id`): the change
    with its interval, `n` (items, chunks or prompts), the method, a p-value where one applies, the margin and the
    verdict. Columns: `COLUMNS`."""
    margins = margins or QualityMargins()
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if df.is_empty() or "kind" not in df.columns:
        return pl.DataFrame(schema=COLUMNS)
    point = pl.col("point_id").fill_null(pl.col("run_id")) if "point_id" in df.columns else pl.col("run_id")
    df = df.with_columns(point.alias("_point"))
    rows = task_rows(df, margins) + perplexity_rows(df, margins) + fidelity_rows(df, margins)
    out = pl.DataFrame(rows, schema=COLUMNS, orient="row") if rows else pl.DataFrame(schema=COLUMNS)
    order = {m: i for i, m in enumerate(("task_accuracy", "task_f1", "perplexity", "kl_mean", "greedy_agreement"))}
    return (
        out.with_columns(_o=pl.col("metric").replace_strict(order, default=len(order)))
        .sort("point_id", "variant", "_o", "metric", maintain_order=True)
        .drop("_o")
    )


def paired(df: pl.DataFrame, kind: str, keys: list[str], value: pl.Expr) -> pl.DataFrame:
    """Per (point, variant other than the baseline): lists `v` (the variant's values) and `b` (the baseline's), on
    the units (`keys`) both measured, in the same order."""
    present = [k for k in keys if k in df.columns]
    units = df.filter(pl.col("kind") == kind).select("_point", "variant", *present, value.alias("v"))
    units = units.drop_nulls("v").unique(["_point", "variant", *present], keep="first", maintain_order=True)
    base = units.filter(pl.col("variant") == BASELINE).drop("variant").rename({"v": "b"})
    both = units.filter(pl.col("variant") != BASELINE).join(base, on=["_point", *present], how="inner")
    return both.group_by("_point", "variant", maintain_order=True).agg("v", "b")


def item_keys(df: pl.DataFrame) -> pl.DataFrame:
    """Task rows keyed by `item_id` (eval sets, lm-eval) or, for rows without one, their index in the workload."""
    item = pl.col("request_index").cast(pl.String)
    if "item_id" in df.columns:
        item = pl.col("item_id").fill_null(item)
    return df.with_columns(item.alias("_item"))


def task_rows(df: pl.DataFrame, margins: QualityMargins) -> list[tuple[Any, ...]]:
    """Exact match (`task_accuracy`), token F1 (`task_f1`) and each other eval metric (`eval_<metric>`, from
    `score`): the paired difference in points over items."""
    df = item_keys(df)
    keys = ["workload_hash", "_item"]
    specs = [(name, pl.col(column)) for name, column in TASK_COLUMNS.items() if column in df.columns]
    if "metric" in df.columns and "score" in df.columns:
        # an item's own metric, unless its exact_match / token_f1 column already carries it (eval sets fill both)
        for metric in df.filter(kind="task")["metric"].drop_nulls().unique(maintain_order=True).to_list():
            own = pl.col("metric") == metric
            if metric in TASK_COLUMNS.values() and metric in df.columns:
                own = own & pl.col(metric).is_null()
            specs.append((f"eval_{metric}", pl.when(own).then(pl.col("score"))))
    out = []
    for name, value in specs:
        for group in paired(df, "task", keys + ["metric"] if name.startswith("eval_") else keys, value).iter_rows(
            named=True
        ):
            out.append(item_comparison(group, name, margins))
    return out


def item_comparison(group: dict[str, Any], metric: str, margins: QualityMargins) -> tuple[Any, ...]:
    v, b = np.asarray(group["v"], dtype=float), np.asarray(group["b"], dtype=float)
    change, low, high = (x * 100 for x in stats.paired_score_interval(b, v, margins.level))
    d = v - b
    binary = bool(np.isin(v, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    if binary:
        p, test = stats.mcnemar_exact(b, v), "McNemar exact p"
    else:
        p, test = paired_t_p(d), "paired t p"
    changed = int(np.count_nonzero(d))
    method = f"paired on items, Bonett-Price adjusted Wald interval; {test}; {changed} of {d.size} items changed"
    return row(group, metric, Estimate("points", (change, low, high), len(d), method, p), margins)


def paired_t_p(d: np.ndarray) -> float:
    from scipy import stats as sps

    if d.size < 2 or np.all(d == d[0]):
        return 1.0 if np.all(d == 0) else math.nan
    return float(sps.ttest_1samp(d, 0.0).pvalue)


def perplexity_rows(df: pl.DataFrame, margins: QualityMargins) -> list[tuple[Any, ...]]:
    """Per chunk (`workload_hash`, `request_index`) the NLL sums of both; the log ratio is sum(d) / sum(tokens)."""
    if not {"nll_mean", "eval_tokens"} <= set(df.columns):
        return []
    nll_sum = pl.col("nll_mean") * pl.col("eval_tokens")
    value = pl.concat_list(nll_sum, pl.col("eval_tokens").cast(pl.Float64))
    out = []
    for group in paired(df, "perplexity", ["workload_hash", "request_index"], value).iter_rows(named=True):
        v, b = np.asarray(group["v"], dtype=float), np.asarray(group["b"], dtype=float)
        log_ratio, low, high, p = stats.ratio_interval(v[:, 0] - b[:, 0], b[:, 1], margins.level)
        pct = tuple(math.expm1(x) * 100 if math.isfinite(x) else math.nan for x in (log_ratio, low, high))
        method = "Student t over chunks on the log ratio of perplexities (delta method); paired t p"
        out.append(row(group, "perplexity", Estimate("pct", pct, len(v), method, p), margins))
    return out


def fidelity_rows(df: pl.DataFrame, margins: QualityMargins) -> list[tuple[Any, ...]]:
    """KL (mean over prompts of each prompt's mean, as the summaries) and greedy agreement (over all positions),
    from the variant's own fidelity rows, with intervals clustered by prompt."""
    needed = {"kl_mean", "greedy_agreement", "positions"}
    if not needed <= set(df.columns):
        return []
    rows = df.filter(pl.col("kind") == "fidelity", pl.col("variant") != BASELINE).drop_nulls(list(needed))
    out = []
    method = "Student t over prompts (clustered by prompt)"
    for group in (
        rows.group_by("_point", "variant", maintain_order=True)
        .agg("kl_mean", "greedy_agreement", "positions")
        .iter_rows(named=True)
    ):
        kl = np.asarray(group["kl_mean"], dtype=float)
        positions = np.asarray(group["positions"], dtype=float)
        agree = np.asarray(group["greedy_agreement"], dtype=float) * positions
        estimate, low, high, p = stats.ratio_interval(kl, np.ones_like(kl), margins.level)
        low = max(low, 0.0) if math.isfinite(low) else low  # KL is never negative
        excess = tuple(math.expm1(x) * 100 if math.isfinite(x) else math.nan for x in (estimate, low, high))
        kl_method = f"{method}, KL as 100(exp(KL) - 1)%; t p against no drift"
        out.append(row(group, "kl_mean", Estimate("pct", excess, len(kl), kl_method, p), margins))
        # agreement - 1 = sum(agreeing - all positions) / sum(positions): 0 when every argmax is kept
        estimate, low, high, p = stats.ratio_interval(agree - positions, positions, margins.level)
        high = min(high, 0.0) if math.isfinite(high) else high
        points = tuple(x * 100 for x in (estimate, low, high))
        agree_method = f"{method}, positions-weighted; t p against full agreement"
        out.append(row(group, "greedy_agreement", Estimate("points", points, len(kl), agree_method, p), margins))
    return out


class Estimate(NamedTuple):
    """One paired change: (estimate, low, high) in `unit`, over `n` pairs, by `method`, with its p value."""

    unit: str
    interval: tuple[Any, ...]
    n: int
    method: str
    p: float | None


def row(group: dict[str, Any], metric: str, estimate: Estimate, margins: QualityMargins) -> tuple[Any, ...]:
    unit, interval, n, method, p = estimate
    change, low, high = (float(x) for x in interval)
    margin = margins.margin(metric)
    higher = HIGHER_IS_BETTER.get(metric, True)
    half = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
    verdict = stats.verdict(low, high, min_effect=margin, higher_is_better=higher)
    return (group["_point"], group["variant"], metric, unit, change, low, high, half, n, method, p, margin, verdict)


def overall_verdicts(comparisons: pl.DataFrame, metrics: tuple[str, ...] = HEADLINE) -> pl.DataFrame:
    """One quality verdict per (point, variant) over `metrics` (default: task accuracy and perplexity; fidelity
    only says "different"): "worse" if any is worse, else "inconclusive" if any is, else "better" if any is, else
    "equivalent" ("quality kept" = equivalent or better), with the metric that decided it."""
    rank = {"worse": 0, "inconclusive": 1, "better": 2, "equivalent": 3}
    schema = {"point_id": pl.String, "variant": pl.String, "quality_verdict": pl.String, "quality_metric": pl.String}
    chosen = comparisons.filter(pl.col("metric").is_in(list(metrics)))
    if chosen.is_empty():
        return pl.DataFrame(schema=schema)
    ranked = chosen.with_columns(_r=pl.col("verdict").replace_strict(rank, return_dtype=pl.Int32))
    return (
        ranked.sort("_r", maintain_order=True)
        .group_by("point_id", "variant", maintain_order=True)
        .agg(pl.col("verdict").first().alias("quality_verdict"), pl.col("metric").first().alias("quality_metric"))
        .sort("point_id", "variant")
    )


def labelled(comparisons: pl.DataFrame, *, level: float = stats.LEVEL) -> pl.DataFrame:
    """The comparisons with `shown`, each one's `format_quality` line (what a report or a dashboard prints)."""
    shown = [format_quality(r, level=level) for r in comparisons.iter_rows(named=True)]
    return comparisons.with_columns(pl.Series("shown", shown, dtype=pl.String))


def format_quality(row: Mapping[str, Any], *, level: float = stats.LEVEL) -> str:
    """A comparison row as one line: "−10.0 pts (95% CI −21.0…+1.0), inconclusive (±11.0 pts)"; a zero-width
    interval (every chunk or prompt the same as the baseline's) says so:
    "0.00% (no change on 16 chunks), equivalent"."""
    unit = " pts" if row["unit"] == "points" else "%"
    change, low, high, n = row["change"], row["ci_low"], row["ci_high"], row["n"]
    verdict = row["verdict"]
    if change is None or not math.isfinite(change):
        return f"not measured, {verdict}"
    small = max(abs(change), abs(low or 0), abs(high or 0)) < 1
    digits = 2 if small and row["unit"] == "pct" else 1  # KL and perplexity changes are often below 1%
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{signed(change, digits)}{unit} (no interval: n={n}), {verdict}"
    if low == high == change:
        noun = {"perplexity": "chunks", "kl_mean": "prompts", "greedy_agreement": "prompts"}.get(row["metric"], "items")
        return f"{signed(change, digits)}{unit} (no change on {n} {noun}), {verdict}"
    text = f"{signed(change, digits)}{unit} ({level:.0%} CI {signed(low, digits)}…{signed(high, digits)}), {verdict}"
    if verdict == "inconclusive":
        text += f" (±{(high - low) / 2:.{digits}f}{unit})"
    return text


def signed(value: float, digits: int) -> str:
    """+1.0, −1.0 (a minus sign, not a hyphen), 0.0."""
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return text
    return ("+" if value > 0 else "−") + text


def kept_labels(configs: pl.DataFrame, comparisons: pl.DataFrame | None, metric: str) -> pl.DataFrame:
    """`configs` with `quality_kept`: what its paired comparison on `metric` says against its baseline, in words
    with the interval ("kept (+0.4 points ±1.1)", "worse (−10.0 points ±11.0)", "inconclusive (±3.2%)");
    "reference" for the baseline, None where the metric was not compared."""
    unit_words = {"points": " points", "pct": "%"}
    labels = {}
    for r in (comparisons if comparisons is not None else pl.DataFrame(schema=COLUMNS)).iter_rows(named=True):
        if r["metric"] != metric:
            continue
        unit = unit_words.get(r["unit"], "")
        word = "kept" if r["verdict"] in ("equivalent", "better") else r["verdict"]
        shown = (
            f"±{r['half_width']:.1f}{unit}"
            if word == "inconclusive"
            else f"{r['change']:+.1f}{unit} ±{r['half_width']:.1f}"
        )
        labels[(r["point_id"], r["variant"])] = f"{word} ({shown})"
    kept = [
        "reference" if r.get("is_reference") else labels.get((r.get("point_id"), r["variant"]))
        for r in configs.iter_rows(named=True)
    ]
    return configs.with_columns(pl.Series("quality_kept", kept, dtype=pl.String))
