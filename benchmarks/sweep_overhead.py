"""Per-point overhead of a papermill sweep against calling the experiment directly, side by side.

Three measurements of the same small quantisation config on the nano model (built once
first), alternating round by round: direct `experiments.run_and_save(config)` in a fresh
Python process (the notebook's own call), a one-point sweep, and an N-point sweep, both
executed by papermill in the `workbench` kernel. The one-point sweep minus the direct run
is a sweep's fixed cost (CLI start, validation, the first point's kernel); the N-point
sweep's extra time per further point, minus the direct run, is the overhead each point adds.

    .venv/bin/python benchmarks/sweep_overhead.py [--rounds 3]

Target (issue 8): <= 3 s per point (it was 5.4 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "prompt_tokens": 16,
    "gen_tokens": 8,
    "requests": 2,
    "trials": 1,
    "perplexity_chunks": 4,
    "task_count": 8,
    "fidelity_count": 2,
    "kv_bits": [],
    "variants": [{"bits": 4}],
}
DIRECT = (
    "import sys, json; from workbench import experiments; "
    "experiments.run_and_save(experiments.build_config('quantise', None, json.loads(sys.argv[1])), sys.argv[2])"
)


def _timed(cmd, env) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=4, help="points of the multi-point sweep")
    args = parser.parse_args()
    from workbench import runtime, stats
    from workbench.models import build

    nano = str(build.build_model("nano", progress=False))
    env = {**runtime.blas_env(), runtime.NO_REEXEC: "1"}
    direct, one, many = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        env["WORKBENCH_OUTPUTS"] = tmp
        env.setdefault("WORKBENCH_CACHE", str(ROOT / "outputs" / "cache"))
        for r in range(args.rounds):  # the three measurements alternate, so drift hits them alike
            config = {**CONFIG, "model": nano, "seed": 100 * r}
            direct.append(_timed([sys.executable, "-c", DIRECT, json.dumps(config), f"{tmp}/direct{r}"], env))
            for name, count, times in (("one", 1, one), ("many", args.points, many)):
                sweep_file = Path(tmp) / f"{name}{r}.yaml"
                points = [{"seed": 100 * r + i} for i in range(count)]
                fixed = {k: v for k, v in config.items() if k != "seed"}
                spec = {"name": f"{name}{r}", "experiment": "quantise", "fixed": fixed, "points": points}
                sweep_file.write_text(yaml.safe_dump(spec))
                times.append(_timed([sys.executable, "-m", "workbench.cli", "sweep", str(sweep_file)], env))
    d, s1, sn = (stats.percentile(x, 50) for x in (direct, one, many))
    per_point = (sn - s1) / (args.points - 1) - d  # what each further point costs beyond its own work
    print(f"direct run_and_save in a fresh process: {d:.2f} s (median of {args.rounds} rounds)")
    print(f"one-point sweep: {s1:.2f} s; {args.points}-point sweep: {sn:.2f} s")
    print(f"fixed cost of a sweep (CLI, validation, first point's overhead): {s1 - d:.2f} s")
    print(f"overhead per further point: {per_point:.2f} s (target <= 3 s: {'met' if per_point <= 3 else 'MISSED'})")
    print(
        json.dumps(
            {
                "direct_s": d,
                "one_point_s": s1,
                "many_points_s": sn,
                "points": args.points,
                "first_point_overhead_s": s1 - d,
                "overhead_per_point_s": per_point,
                "rounds": args.rounds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
