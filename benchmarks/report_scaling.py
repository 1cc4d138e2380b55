"""How `workbench report` scales with a sweep's size: wall time and file size at 10, 100 and 1,000 points.

Each sweep is made by copying the finished points of a real sweep (default `smoke`; it is run on `nano`
first when the outputs folder has none) under new point ids. Each copy's rows keep their measurements and
get a run id of their own, so every copy is one more run, as a point of a real sweep is. The report runs as
the user runs it, in a fresh process: papermill, the analysis, the charts, nbconvert, the PNGs.

    .venv/bin/python benchmarks/report_scaling.py [--source smoke] [--sizes 10 100 1000]

Target (issue 8): 1,000 points in under 60 s and under 10 MB of HTML.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = "import sys; from workbench import tool, report; sys.exit(tool.entry(report.main, sys.argv[1:]))"


def source_points(name: str) -> list[Path]:
    """Finished points of a real sweep; the smoke sweep is run once when there is none."""
    from workbench.paths import outputs_dir
    from workbench.sweep import runner

    root = outputs_dir() / "sweeps" / name
    points = sorted(p.parent for p in root.glob("*/results.parquet"))
    if not points:
        if name != "smoke":
            raise SystemExit(f"sweep {name!r} has no finished points under {root.parent}")
        runner.run_sweep(runner.load_sweep(ROOT / "params" / "smoke.yaml"), runner.ExecutionOptions(progress=False))
        points = sorted(p.parent for p in root.glob("*/results.parquet"))
    return points


def copy_sweep(points: list[Path], target: Path, size: int) -> None:
    """`size` points, the real ones copied in turn, each under a new point id and run id."""
    import polars as pl
    import yaml

    from workbench.results import integrity

    for i in range(size):
        source = points[i % len(points)]
        point_id = f"copy{i:05d}-{source.name}"
        directory = target / point_id
        directory.mkdir(parents=True)
        for name in ("params.yaml", "env.json"):
            if (source / name).exists():
                shutil.copy(source / name, directory / name)
        meta = yaml.safe_load((source / "point.yaml").read_text())
        meta.update(point_id=point_id, sweep=target.name)
        (directory / "point.yaml").write_text(yaml.safe_dump(meta))
        rows = pl.read_parquet(source / "results.parquet")
        rows = rows.with_columns(run_id=pl.col("run_id") + f"-copy{i:05d}")
        rows.write_parquet(directory / "results.parquet")
        integrity.write_manifest(directory, rows.height, (directory / "results.parquet").read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="smoke", help="a finished sweep to copy points from")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    from workbench.paths import outputs_dir

    points = source_points(args.source)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WORKBENCH_OUTPUTS": tmp}
        for size in args.sizes:
            name = f"scale-{size}"
            copy_sweep(points, Path(tmp) / "sweeps" / name, size)
            output = Path(tmp) / "reports" / f"{name}.html"
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", REPORT, name, "-o", str(output), "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            verdict = json.loads(proc.stdout.strip().splitlines()[-1])
            files = output.with_name(f"{output.stem}_files")
            artefacts = sum(p.stat().st_size for p in files.rglob("*") if p.is_file())
            results.append(
                {
                    "points": size,
                    "seconds": round(seconds, 1),
                    "html_mb": round(output.stat().st_size / 1e6, 2),
                    "artefacts_mb": round(artefacts / 1e6, 2),
                    "points_reported": verdict["points"],
                }
            )
            row = results[-1]
            print(
                f"{size:>6} points: {row['seconds']:>6.1f} s, HTML {row['html_mb']:.2f} MB, "
                f"artefacts {row['artefacts_mb']:.2f} MB (executed notebook, PNGs, summary.json)",
                flush=True,
            )
    largest = results[-1]
    met = largest["seconds"] < 60 and largest["html_mb"] < 10
    print(f"source: {len(points)} real points of sweep {args.source!r} under {outputs_dir() / 'sweeps'}")
    print(json.dumps({"results": results, "target": "1,000 points < 60 s and < 10 MB", "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
