"""The result schema, atomic run folders, and reading results back.

One row per measured unit: a request in a trial (`kind="speed"`), a task item
(`"task"`), a fidelity sequence (`"fidelity"`) or a perplexity chunk (`"perplexity"`).
Every row carries the run, model, backend and workload identity and the variant's
parameters, so summaries are always computed from rows. See docs/results.md.

    outputs/runs/<run_id>/{params.yaml, env.json, results.parquet}
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import secrets
from pathlib import Path

import polars as pl

from workbench import stats
from workbench.errors import DataError
from workbench.paths import atomic_write_bytes, atomic_write_text, outputs_dir

IDENTITY = {
    "run_id": pl.String,
    "created_at": pl.String,
    "experiment": pl.String,
    "variant": pl.String,
    "kind": pl.String,
    "model_id": pl.String,
    "model_hash": pl.String,
    "backend": pl.String,
    "blas": pl.String,
    "workload": pl.String,
    "workload_hash": pl.String,
    "params_json": pl.String,
    "family": pl.String,
    "changes_json": pl.String,
    "lossless": pl.Boolean,
    "quality_measured": pl.String,
    "dtype": pl.String,
}
MEASURES = {
    "round": pl.Int32,
    "trial": pl.Int32,
    "request_index": pl.Int32,
    "batch_index": pl.Int32,
    "batch_size": pl.Int32,
    "prompt_tokens": pl.Int32,
    "generated_tokens": pl.Int32,
    "ttft_s": pl.Float64,
    "tpot_s": pl.Float64,
    "e2e_s": pl.Float64,
    "prefill_tps": pl.Float64,
    "decode_tps": pl.Float64,
    "itl_s": pl.List(pl.Float64),
    "window_s": pl.Float64,
    "peak_mem_bytes": pl.Int64,
    "rss_bytes": pl.Int64,
    "load_s": pl.Float64,
    "mlx_prompt_tps": pl.Float64,
    "mlx_generation_tps": pl.Float64,
    "output_tokens": pl.List(pl.Int32),
    "priority": pl.Int32,
    "cache_hit": pl.Boolean,
    "tier": pl.String,
    "arrival_s": pl.Float64,
    "from_draft": pl.List(pl.Boolean),
    "nll_mean": pl.Float64,
    "eval_tokens": pl.Int32,
    "exact_match": pl.Float64,
    "token_f1": pl.Float64,
    "prediction": pl.String,
    "reference": pl.String,
    "kl_mean": pl.Float64,
    "greedy_agreement": pl.Float64,
    "first_divergence": pl.Int32,
    "positions": pl.Int32,
}
SCHEMA = {**IDENTITY, **MEASURES}
KINDS = ("speed", "task", "fidelity", "perplexity")


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def model_identity(loaded, workload) -> dict:
    """The identity columns every row of a loaded model on a workload carries."""
    from workbench import runtime

    return {
        "model_id": loaded.model_id,
        "model_hash": loaded.model_hash,
        "backend": runtime.backend(),
        "blas": runtime.active_blas(),
        "dtype": getattr(loaded, "dtype", None),
        "workload": workload.name,
        "workload_hash": workload.hash,
    }


def to_frame(rows: list[dict], **identity) -> pl.DataFrame:
    """Rows (dicts of measures) plus shared identity columns -> a frame in SCHEMA order and types."""
    unknown = set(identity) - set(IDENTITY)
    if unknown:
        raise ValueError(f"unknown identity columns: {sorted(unknown)}")
    if isinstance(identity.get("params_json"), dict):
        identity["params_json"] = json.dumps(identity["params_json"], sort_keys=True, default=str)
    identity.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    records = []
    for row in rows:
        if row.get("kind", identity.get("kind")) not in KINDS:
            raise ValueError(f"row kind must be one of {KINDS}")
        unknown = set(row) - set(SCHEMA)
        if unknown:
            raise ValueError(f"unknown row keys {sorted(unknown)}: add them to results.SCHEMA or drop them")
        record = {**identity, **row}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                record[key] = None
        records.append(record)
    frame = pl.DataFrame(records, schema=SCHEMA) if records else pl.DataFrame(schema=SCHEMA)
    return frame


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write a parquet file atomically: a reader sees the old file, or the complete new one."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def write_run(frame: pl.DataFrame, *, params: dict, env: dict, run_dir: Path | None = None) -> Path:
    """Write params.yaml, env.json, then results.parquet last: a run is finished when its parquet exists."""
    import yaml

    run_id = frame["run_id"][0] if frame.height else new_run_id()
    run_dir = Path(run_dir) if run_dir else outputs_dir() / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "params.yaml", yaml.safe_dump(params, sort_keys=True))
    atomic_write_text(run_dir / "env.json", json.dumps(env, indent=2, sort_keys=True, default=str))
    write_parquet(frame, run_dir / "results.parquet")
    return run_dir


def load(*runs, root: Path | None = None) -> pl.LazyFrame:
    """A LazyFrame across finished runs: run ids, run folders or parquet files (default: all runs)."""
    root = Path(root) if root else outputs_dir() / "runs"
    paths = []
    for run in runs or [None]:
        if run is None:
            paths.extend(sorted(root.glob("*/results.parquet")))
            continue
        candidate = Path(run)
        if not candidate.exists():
            candidate = root / str(run)
        if candidate.is_dir():
            candidate = candidate / "results.parquet"
        if not candidate.is_file():
            raise FileNotFoundError(f"no finished run at {candidate}")
        paths.append(candidate)
    if not paths:
        return pl.DataFrame(schema=SCHEMA).lazy()
    return pl.concat([pl.scan_parquet(p) for p in paths], how="diagonal_relaxed")


def summarise_variants(frame: pl.DataFrame | pl.LazyFrame, baseline: str = "baseline") -> pl.DataFrame:
    """One row per variant, computed from the rows: medians of per-request speed, throughput over the
    trial windows, perplexity, task accuracy, fidelity, and whether greedy outputs equal the baseline's."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    speed = df.filter(kind="speed")
    per_variant = speed.group_by("variant", maintain_order=True).agg(
        stats.quantile_expr("ttft_s", 0.5),
        stats.quantile_expr("ttft_s", 0.9).alias("ttft_s_p90"),
        stats.quantile_expr("tpot_s", 0.5),
        stats.quantile_expr("e2e_s", 0.5),
        stats.quantile_expr("decode_tps", 0.5),
        stats.quantile_expr("prefill_tps", 0.5),
        pl.col("peak_mem_bytes").max(),
        pl.col("generated_tokens").sum(),
        pl.len().alias("requests"),
    )
    windows = (
        speed.group_by("variant", "round", "trial")
        .agg(pl.col("window_s").first())
        .group_by("variant")
        .agg(pl.col("window_s").sum())
    )
    per_variant = (
        per_variant.join(windows, on="variant", how="left")
        .with_columns(
            throughput_tps=pl.col("generated_tokens") / pl.col("window_s"),
            throughput_rps=pl.col("requests") / pl.col("window_s"),
        )
        .drop("window_s")
    )
    quality = df.group_by("variant", maintain_order=True).agg(
        pl.col("nll_mean").filter(pl.col("kind") == "perplexity").mean().exp().alias("perplexity"),
        pl.col("exact_match").filter(pl.col("kind") == "task").mean().alias("task_accuracy"),
        pl.col("token_f1").filter(pl.col("kind") == "task").mean().alias("task_f1"),
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


def is_finished(directory: Path) -> bool:
    """The point's results exist and read back as parquet (a truncated file is not a finished point)."""
    parquet = directory / "results.parquet"
    if not parquet.is_file():
        return False
    try:
        pl.read_parquet_schema(parquet)
    except Exception:  # polars raises several types for a corrupt file; any of them means "not finished"
        return False
    return True


def point_meta(directory: Path) -> dict:
    import yaml

    return yaml.safe_load((directory / "point.yaml").read_text())


def load_sweep_results(name: str):
    """One LazyFrame across a sweep's finished points, with the point parameters as `param_*` columns."""
    import polars as pl

    root = outputs_dir() / "sweeps" / name
    frames = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir()):
        if not is_finished(directory) or not (directory / "point.yaml").is_file():
            continue
        meta = point_meta(directory)
        columns = {
            f"param_{k}": (v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))
            for k, v in meta["params"].items()
        }
        frames.append(
            pl.scan_parquet(directory / "results.parquet").with_columns(
                pl.lit(meta["point_id"]).alias("point_id"),
                pl.lit(name).alias("sweep"),
                pl.lit(meta.get("workers", 1)).alias("workers"),
                *[pl.lit(v).alias(k) for k, v in columns.items()],
            )
        )
    if not frames:
        raise DataError(f"sweep {name!r} has no finished points under {root}")
    return pl.concat(frames, how="diagonal_relaxed")


def list_sweeps() -> list[dict]:
    root = outputs_dir() / "sweeps"
    out = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir()):
        points = [p for p in directory.iterdir() if p.is_dir()]
        done = sum(is_finished(p) for p in points)
        failed = sum((p / "error.json").exists() and not is_finished(p) for p in points)
        out.append({"sweep": directory.name, "done": done, "failed": failed})
    return out
