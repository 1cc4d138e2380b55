"""`report X --baseline Y` compares like with like: a configuration of X is compared with the same configuration
of Y only when both measured the same model (weights fingerprint, else model id), in the same compute dtype, on
the same workload (per kind of row: the speed prompts, the perplexity text and chunking, the eval set).

Configurations are paired as the regression check pairs them (point id and variant; by variant alone when no
point id is shared). Pairs that differ are left out, each named with what differs; when no pair is left, the
report refuses with one line naming the difference, instead of reporting a "regression" between unrelated
sweeps (a +14% perplexity that was another model on another text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from workbench.analysis.per_variant import with_identity


@dataclass
class BaselineMatch:
    """The earlier sweep's rows cut to comparable configurations, and what was left out, one line each."""

    previous: pl.DataFrame
    keys: tuple[str, ...]
    matched: int
    left_out: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return self.matched > 0


def identities(rows: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """Per configuration (`keys`) and kind of row: the model, its compute dtype, the workload hash and, for
    perplexity, the chunking (chunks × tokens per chunk)."""
    df = with_identity(rows)
    for column, dtype in (("model_hash", pl.String), ("workload_hash", pl.String), ("eval_tokens", pl.Int64)):
        if column not in df.columns:
            df = df.with_columns(pl.lit(None, dtype).alias(column))
    return df.group_by(*keys, "kind", maintain_order=True).agg(
        pl.coalesce("model_hash", "model_id").drop_nulls().first().alias("model"),
        pl.col("model_id").drop_nulls().first(),
        pl.col("dtype").drop_nulls().first(),
        pl.col("workload_hash").drop_nulls().first(),
        pl.col("workload").drop_nulls().first() if "workload" in df.columns else pl.lit(None).alias("workload"),
        pl.when(pl.col("kind") == "perplexity")
        .then(pl.format("{} chunks × {} tokens", pl.len(), pl.col("eval_tokens").max()))
        .otherwise(None)
        .drop_nulls()
        .first()
        .alias("chunking"),
    )


def _difference(kind: str, now: dict[str, Any], then: dict[str, Any]) -> str | None:
    if now["model"] != then["model"]:
        return (
            f"model differs ({now['model_id']} {str(now['model'])[:8]} vs {then['model_id']} {str(then['model'])[:8]})"
        )
    if now["dtype"] != then["dtype"]:
        return f"compute dtype differs ({now['dtype']} vs {then['dtype']})"
    if now["workload_hash"] != then["workload_hash"]:
        what = "speed workload" if kind == "speed" else f"{kind} data"
        return (
            f"{what} differs ({now['workload']} {str(now['workload_hash'])[:8]} vs "
            f"{then['workload']} {str(then['workload_hash'])[:8]})"
        )
    if now["chunking"] != then["chunking"]:
        return f"perplexity chunking differs ({now['chunking']} vs {then['chunking']})"
    return None


def match_baseline(current: pl.DataFrame, previous: pl.DataFrame) -> BaselineMatch:
    """Keep the earlier sweep's configurations that measured what this sweep's same configurations measured."""
    current, previous = with_identity(current), with_identity(previous)
    keys: tuple[str, ...] = ("point_id", "variant")
    shared = current.select(keys).unique().join(previous.select(keys).unique(), on=list(keys), how="inner")
    if shared.is_empty():
        keys = ("variant",)
    now = {(tuple(r[k] for k in keys), r["kind"]): r for r in identities(current, keys).iter_rows(named=True)}
    then = {(tuple(r[k] for k in keys), r["kind"]): r for r in identities(previous, keys).iter_rows(named=True)}
    configs = sorted({key for key, _ in now} & {key for key, _ in then}, key=str)
    kept, left_out = [], []
    for config in configs:
        kinds = sorted({kind for key, kind in now if key == config} & {kind for key, kind in then if key == config})
        problems = [p for kind in kinds if (p := _difference(kind, now[(config, kind)], then[(config, kind)]))]
        if problems:
            named = dict(zip(keys, config))
            where = f" (point {str(named['point_id'])[:8]})" if "point_id" in named else ""
            left_out.append(f"{named['variant']}{where}: {problems[0]}")
        else:
            kept.append(config)
    frame = pl.DataFrame([dict(zip(keys, k)) for k in kept], schema=dict.fromkeys(keys, pl.String))
    return BaselineMatch(previous.join(frame, on=list(keys), how="semi"), keys, len(kept), left_out)


def check(current: pl.DataFrame, previous: pl.DataFrame, name: str) -> BaselineMatch:
    """`match_baseline`, for `report --baseline NAME`: nothing comparable is a one-line `UsageError` naming what
    differs; each configuration left out is a warning on stderr (and a note in the report)."""
    import sys

    from workbench.errors import UsageError

    found = match_baseline(current, previous)
    if not found.comparable:
        why = found.left_out[0] if found.left_out else "no configuration of one is in the other"
        raise UsageError(f"--baseline {name}: nothing in it is comparable with this sweep: {why}")
    for line in found.left_out:
        print(f"warning: --baseline {name}: left out {line}", file=sys.stderr)
    return found
