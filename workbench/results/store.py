"""The result schema, atomic run folders, and reading results back.

One row per measured unit: a request in a trial (`kind="speed"`), a task or eval-set
item or lm-eval document (`"task"`, with its `item_id`, `metric` and `score`), a fidelity
sequence (`"fidelity"`), a perplexity chunk (`"perplexity"`) or a served fidelity probe (`"probe"`).
Every row carries the run, model, backend and workload identity and the variant's
parameters, so summaries are always computed from rows. See docs/results.md.

    outputs/runs/<run_id>/{params.yaml, env.json, results.parquet, manifest.json}
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from workbench.errors import DataError
from workbench.paths import OutputsError, atomic_write_bytes, atomic_write_text, outputs_dir
from workbench.redact import redact, redact_text
from workbench.results import integrity

REDACTED = ("target", "params_json", "model_id", "error", "note", "final_url")  # text a server or a user's URL fills

IDENTITY: dict[str, pl.DataType | type[pl.DataType]] = {
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
    "target": pl.String,
    "machine_id": pl.String,
    "machine": pl.String,
}
MEASURES: dict[str, pl.DataType | type[pl.DataType]] = {
    "round": pl.Int32,
    "round_load": pl.Float64,
    "round_wall_s": pl.Float64,
    "round_outlier": pl.Boolean,
    "rounds_stopped": pl.String,
    "min_effect": pl.Float64,
    "precision_target": pl.Float64,
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
    "chat_template": pl.Boolean,
    "ok": pl.Boolean,
    "error": pl.String,
    "profile": pl.String,
    "level": pl.Float64,
    "saturated": pl.Boolean,
    "sent_s": pl.Float64,
    "chunks": pl.Int32,
    "cached_tokens": pl.Int32,
    "session_id": pl.String,
    "turn": pl.Int32,
    "item_id": pl.String,
    "metric": pl.String,
    "score": pl.Float64,
    "acc_norm": pl.Float64,
    "choice_logprobs": pl.List(pl.Float64),
    "note": pl.String,
    "final_url": pl.String,
    "identical": pl.Boolean,
    "overlap_requests": pl.Int32,
}
SCHEMA = {**IDENTITY, **MEASURES}
KINDS = ("speed", "task", "fidelity", "perplexity", "startup", "probe")
BASELINE = "baseline"  # the `variant` every other variant of a run is compared with


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class _Identified(Protocol):  # a `models.loader.LoadedModel` (results sit below models: no import)
    @property
    def model_id(self) -> str: ...
    @property
    def model_hash(self) -> str: ...


class _Named(Protocol):  # a `workloads.Workload`
    @property
    def name(self) -> str: ...
    @property
    def hash(self) -> str: ...


def model_identity(loaded: _Identified, workload: _Named) -> dict[str, Any]:
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


def to_frame(rows: list[dict[str, Any]], **identity: Any) -> pl.DataFrame:
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
        for key in REDACTED:
            if isinstance(record.get(key), str):
                record[key] = redact_text(record[key])
        records.append(record)
    frame = pl.DataFrame(records, schema=SCHEMA) if records else pl.DataFrame(schema=SCHEMA)
    return frame


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write a parquet file atomically: a reader sees the old file, or the complete new one."""
    atomic_write_bytes(Path(path), parquet_bytes(frame))
    return Path(path)


def write_run(
    frame: pl.DataFrame, *, params: dict[str, Any], env: dict[str, Any], run_dir: Path | str | None = None
) -> Path:
    """Write params.yaml, env.json, results.parquet, then manifest.json last (its row count and checksum): a run is
    finished when its parquet matches the manifest. If a write fails, the measured rows are not lost: they are kept
    under the system temp directory and the `OutputsError` names the file."""
    import yaml

    params, env = redact(params), redact(env)  # no password of a URL is ever written
    run_id = frame["run_id"][0] if frame.height else new_run_id()
    run_dir = Path(run_dir) if run_dir else outputs_dir() / "runs" / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "params.yaml", yaml.safe_dump(params, sort_keys=True))
        atomic_write_text(run_dir / "env.json", json.dumps(env, indent=2, sort_keys=True, default=str))
        data = parquet_bytes(frame)
        atomic_write_bytes(run_dir / "results.parquet", data)
        integrity.write_manifest(run_dir, frame.height, data)
    except OSError as exc:
        kept = rescue_rows(frame, params=params, env=env, run_id=run_id)
        reason = exc.strerror or type(exc).__name__
        raise OutputsError(
            f"could not write {run_dir} ({reason}); the {frame.height} measured rows are in {kept}"
        ) from None
    return run_dir


def rescue_rows(frame: pl.DataFrame, *, params: dict[str, Any], env: dict[str, Any], run_id: str) -> Path:
    """Keep rows that could not be written where they belong: `<tmp>/workbench-rescued/<run_id>/results.parquet`."""
    directory = Path(tempfile.gettempdir()) / "workbench-rescued" / run_id
    directory.mkdir(parents=True, exist_ok=True)
    params, env = redact(params), redact(env)
    (directory / "params.yaml").write_text(json.dumps(params, indent=1, default=str))
    (directory / "env.json").write_text(json.dumps(env, indent=1, default=str))
    frame.write_parquet(directory / "results.parquet")
    return directory / "results.parquet"


def rescue_partial(
    rows_by_variant: dict[str, list[dict[str, Any]]], *, run_id: str, experiment: str, params: dict[str, Any]
) -> Path | None:
    """When a run stops on a fault: keep the rows measured so far (schema keys only) with `rescue_rows`, and say
    where on stderr. Returns the parquet's path (None when nothing had been measured or even this failed)."""
    frames = []
    for variant, rows in rows_by_variant.items():
        kept = [{k: v for k, v in row.items() if k in MEASURES or k == "kind"} for row in rows]
        kept = [{**row, "kind": row.get("kind") if row.get("kind") in KINDS else "speed"} for row in kept]
        if kept:
            frames.append(to_frame(kept, run_id=run_id, experiment=experiment, variant=variant))
    if not frames:
        return None
    try:
        frame = pl.concat(frames, how="vertical")
        path = rescue_rows(frame, params=params, env={}, run_id=run_id)
    except Exception as exc:  # the fault that stopped the run surfaces, not this one
        print(f"workbench: the rows measured so far could not be kept ({type(exc).__name__})", file=sys.stderr)
        return None
    print(f"workbench: the run stopped on an error; its {frame.height} rows so far are in {path}", file=sys.stderr)
    return path


def load(*runs: str | Path, root: Path | None = None) -> pl.LazyFrame:
    """A LazyFrame across finished runs: run ids, run folders or parquet files (default: all runs)."""
    root = Path(root) if root else outputs_dir() / "runs"
    paths = []
    for run in runs or (None,):
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


def is_finished(directory: Path) -> bool:
    """The folder's results.parquet matches the manifest written after it (rows, size, checksum) and reads back."""
    return integrity.point_problem(directory) is None


def load_sweep_results(name: str, *, include_stale: bool = False, warn: bool = True) -> pl.LazyFrame:
    """One LazyFrame across a sweep's verified points, with the point parameters as `param_*` columns. Points that
    fail verification, stale points (not in the current sweep file; unless `include_stale`) and stray entries are
    left out, each with a warning on stderr when `warn`."""
    import polars as pl

    root = outputs_dir() / "sweeps" / name
    scan = integrity.scan_sweep(root, include_stale=include_stale)
    if warn:
        for line in scan.warnings():
            print(f"warning: {line}", file=sys.stderr)
    frames = []
    for directory in scan.finished:
        meta = integrity.read_point_meta(directory)
        if meta is None:  # point.yaml went away since the scan (which keeps only points that have one)
            continue
        columns = {
            f"param_{k}": (v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))
            for k, v in meta["params"].items()
        }
        frames.append(
            pl.scan_parquet(directory / "results.parquet").with_columns(
                pl.lit(str(meta.get("point_id", directory.name))).alias("point_id"),
                pl.lit(name).alias("sweep"),
                pl.lit(meta.get("workers", 1)).alias("workers"),
                pl.lit((meta.get("worker") or {}).get("name")).cast(pl.String).alias("worker"),
                pl.lit(meta.get("label"), dtype=pl.String).alias("point_label"),  # the sweep file's `label:`
                *[pl.lit(v).alias(k) for k, v in columns.items()],
            )
        )
    if not frames:
        raise DataError(f"sweep {name!r} has no finished points under {root}")
    return pl.concat(frames, how="diagonal_relaxed")


def list_sweeps() -> list[dict[str, Any]]:
    """Per sweep folder: its experiment and sweep file, when the file was last recorded (`recorded_at`) and the
    last point finished (`last_run`, UTC), verified (`done`), `failed`, `unfinished`, `bad` (fail verification,
    by id) and `stale` counts."""
    root = outputs_dir() / "sweeps"
    out = []
    for directory in sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")):
        scan = integrity.scan_sweep(directory)
        counts = {key: len(getattr(scan, key)) for key in ("finished", "failed", "unfinished", "stale")}
        record = integrity.read_sweep_record(directory)
        stamps = [p.stat().st_mtime for p in directory.glob("*/manifest.json")]
        last = dt.datetime.fromtimestamp(max(stamps), dt.timezone.utc).isoformat(timespec="seconds") if stamps else None
        row = {"sweep": directory.name, "experiment": record.get("experiment"), "file": record.get("file")}
        row |= {"recorded_at": record.get("recorded_at"), "last_run": last}
        out.append({**row, "done": counts.pop("finished"), **counts, "bad": scan.bad})
    return out
