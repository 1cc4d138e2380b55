"""Other tools' results once imported (`workbench import`): where they live and how they are read back.

    outputs/imports/<name>/{results.parquet, provenance.json, manifest.json}

`provenance.json` holds the tool, its version, the file's path and sha256, whether the file had per-request
timing, and each level's own summary figures under the tool's names. Written in one atomic rename, manifest
last, so a reader sees a finished import or none (`workbench.imports.importer` writes them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import DataError
from workbench.paths import atomic_dir, outputs_dir
from workbench.results import integrity

TOOL_NAMES = {"guidellm": "GuideLLM", "aiperf": "AIPerf", "vllm": "vLLM bench serve"}


def imports_dir() -> Path:
    return outputs_dir() / "imports"


def write_import(name: str, data: bytes, rows: int, provenance: dict[str, Any]) -> Path:
    """The import's folder, written whole or not at all (`data`: the rows as parquet bytes)."""
    target = imports_dir() / name
    with atomic_dir(target) as tmp:
        (tmp / integrity.RESULTS).write_bytes(data)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True, default=str))
        integrity.write_manifest(tmp, rows, data)
    return target


def load_import(name: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """An import's rows and provenance; a missing or unfinished import is a one-line `DataError`."""
    directory = imports_dir() / name
    problem = integrity.point_problem(directory) if directory.is_dir() else "no such import"
    if problem or not (directory / "provenance.json").is_file():
        raise DataError(f"import {name!r} ({directory}): {problem or 'no provenance.json'}; run `workbench import`")
    rows = pl.read_parquet(directory / integrity.RESULTS)
    return rows, json.loads((directory / "provenance.json").read_text())
