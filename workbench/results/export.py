"""`workbench export SWEEP --csv|--parquet`: a sweep's verified rows as one flat file for other tools.

One row per request per trial, with the point parameters as `param_*` columns, exactly as the report reads them.
CSV has no lists or records, so list and struct columns (`itl_s`, a request's inter-token gaps) become JSON text
in both formats: the file opens the same in a spreadsheet, pandas or DuckDB, and `json.loads` gives the values
back. Points that fail verification or are stale are left out, each named on stderr.

    workbench export default --csv [-o outputs/exports/default.csv] [--include-stale]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import polars as pl

from workbench import console
from workbench.errors import DataError, UsageError
from workbench.paths import atomic_write_bytes, outputs_dir
from workbench.results import integrity

SWEEP_NAME = re.compile(r"[A-Za-z0-9_-]+")


def flatten(frame: pl.DataFrame) -> pl.DataFrame:
    """List, array and struct columns as JSON text (nulls stay null); every other column as it is."""
    nested = [name for name, dtype in frame.schema.items() if isinstance(dtype, (pl.List, pl.Array, pl.Struct))]
    return frame.with_columns(
        pl.col(name).map_elements(_json, return_dtype=pl.String, skip_nulls=True) for name in nested
    )


def _json(value: Any) -> str:
    import json

    if isinstance(value, pl.Series):
        value = value.to_list()
    return json.dumps(value, default=str)


def setup_arg_parser() -> console.Parser:
    parser = console.parser("export", "write a sweep's rows to one CSV or Parquet file, list columns flattened")
    parser.add_argument("sweep", help="name of a sweep under outputs/sweeps/")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--csv", action="store_const", const="csv", dest="format", help="comma-separated text")
    kind.add_argument("--parquet", action="store_const", const="parquet", dest="format", help="Parquet")
    parser.add_argument("-o", "--output", help="file to write (default: outputs/exports/<sweep>.<format>)")
    parser.add_argument("--include-stale", action="store_true", help="include points no longer in the sweep file")
    return parser


def main(argv: list[str] | None = None) -> int:
    import io

    from workbench.results.store import load_sweep_results

    args = setup_arg_parser().parse_args(argv)
    if not SWEEP_NAME.fullmatch(args.sweep):
        raise UsageError(f"sweep name {args.sweep[:60]!r}: expected letters, digits, '-' and '_' only")
    if not integrity.scan_sweep(outputs_dir() / "sweeps" / args.sweep, include_stale=args.include_stale).finished:
        raise UsageError(f"sweep {args.sweep!r} has no finished points under {outputs_dir() / 'sweeps'}")
    output = Path(args.output) if args.output else outputs_dir() / "exports" / f"{args.sweep}.{args.format}"
    if output.is_dir():
        raise UsageError(f"-o {output}: is a directory")
    try:
        frame = flatten(load_sweep_results(args.sweep, include_stale=args.include_stale).collect())
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    buffer = io.BytesIO()
    frame.write_csv(buffer) if args.format == "csv" else frame.write_parquet(buffer)
    atomic_write_bytes(output, buffer.getvalue())
    print(f"{frame.height} rows × {frame.width} columns from sweep {args.sweep}", file=sys.stderr)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(console.entry(main))
