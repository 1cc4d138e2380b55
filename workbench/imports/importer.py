"""`workbench import FILE --tool guidellm|aiperf|vllm [--name NAME]`: another tool's results as workbench rows.

The file is read and checked whole first (`readers.read`); only then is `outputs/imports/<name>/` written, in
one atomic rename: `results.parquet` (one row per request in the shared schema, `experiment = "import"`, the
variant `<tool>-<profile><level>`, metrics recomputed under docs/metrics.md), `provenance.json` (tool, version,
the file's path and sha256, whether it had per-request timing, each level's own summary figures under the
tool's names) and `manifest.json`. A bad file is one line naming it (and the line), exit 2, nothing written;
an existing import of the same name is never overwritten.

    workbench import profile_export.jsonl --tool aiperf --name aiperf-c2
    workbench report SWEEP --endpoint ENDPOINT_SWEEP --compare-import aiperf-c2
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import polars as pl

from workbench import console
from workbench.errors import UsageError
from workbench.imports import readers
from workbench.results import store
from workbench.results.imported import TOOL_NAMES, imports_dir, write_import

NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def level_label(profile: str, level: float) -> str:
    short = {"synchronous": "sync", "throughput": "max", "concurrency": "c", "rate": "r"}.get(profile, profile)
    return short if profile in ("synchronous", "throughput", "unknown") else f"{short}{level:g}"


def to_frame(imported: readers.Imported, *, name: str, provenance: dict) -> pl.DataFrame:
    """Every level's rows with the import's identity (no model hash or backend: the file does not know them)."""
    frames = []
    for level in imported.levels:
        variant = f"{imported.tool}-{level_label(level.profile, level.level)}"
        params = {"profile": level.profile, "level": level.level, "import": name, "tool": imported.tool}
        identity = {
            "run_id": f"import-{name}",
            "created_at": provenance["imported_at"],
            "experiment": "import",
            "variant": variant,
            "kind": "speed",
            "model_id": imported.facts.get("model"),
            "workload": f"import:{imported.tool}",
            "workload_hash": provenance["sha256"][:16],
            "params_json": json.dumps(params, sort_keys=True),
            "family": "import",
            "changes_json": json.dumps({"tool": imported.tool, "version": imported.version}, sort_keys=True),
            "target": imported.facts.get("target") or f"{imported.tool} file",
        }
        frames.append(store.to_frame(level.rows, **identity))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=store.SCHEMA)


def import_file(path: str | Path, tool: str, name: str | None = None) -> Path:
    """Read `path` as `tool`'s file and write it under `outputs/imports/<name>/`; returns the folder."""
    path = Path(path)
    name = name or f"{tool}-{path.stem}"
    if not NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '-' and '_' (at most 80)")
    target = imports_dir() / name
    if target.exists():
        raise UsageError(f"import {name!r} already exists at {target}; choose another --name or remove it")
    imported = readers.read(path, tool)
    provenance = {
        "name": name,
        "tool": imported.tool,
        "version": imported.version,
        "file": str(path.resolve()),
        "sha256": sha256(path),
        "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "per_request": imported.per_request,
        "definitions": "workbench (recomputed from per-request timing)"
        if imported.per_request
        else f"{TOOL_NAMES[imported.tool]}'s own (the file has summaries only)",
        "facts": imported.facts,
        "levels": [
            {
                "profile": lv.profile,
                "level": lv.level,
                "requests": len(lv.rows),
                "window_s": lv.window_s,
                "tool_summary": lv.tool_summary,
            }
            for lv in imported.levels
        ],  # fmt: skip
    }
    frame = to_frame(imported, name=name, provenance=provenance)
    return write_import(name, store.parquet_bytes(frame), frame.height, provenance)


def setup_arg_parser() -> console.Parser:
    parser = console.parser("import", "read GuideLLM, AIPerf or vllm bench serve results into workbench rows")
    parser.add_argument("file", help="GuideLLM JSON, AIPerf profile_export.jsonl (or its aggregate JSON), vLLM JSON")
    parser.add_argument("--tool", required=True, choices=readers.TOOLS)
    parser.add_argument("--name", help="the import's name under outputs/imports/ (default: <tool>-<file stem>)")
    parser.add_argument("--json", action="store_true", help="print the provenance as one JSON object, last line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    directory = import_file(args.file, args.tool, args.name)
    provenance = json.loads((directory / "provenance.json").read_text())
    levels = ", ".join(f"{lv['profile']} {lv['level']:g} ({lv['requests']} requests)" for lv in provenance["levels"])
    print(f"imported:  {TOOL_NAMES[args.tool]} {provenance['version']}: {levels}")
    print(f"metrics:   {provenance['definitions']}")
    print(f"written:   {directory}")
    if args.json:
        console.print_json({"import": str(directory), **provenance})
    return 0
