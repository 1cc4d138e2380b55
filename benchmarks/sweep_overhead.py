"""Per-point overhead of a papermill sweep against calling the experiment directly, side by side.

Both sides run the same small quantisation config on the nano model (built once first),
alternating: direct `experiments.run_and_save(config)` in a fresh Python process (the
notebook's own call), and a one-point sweep executed by papermill in the `workbench`
kernel. Overhead = sweep point wall time - direct wall time.

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from workbench import build, runtime

    nano = str(build.build_model("nano", progress=False))
    env = {**runtime.blas_env(), runtime.NO_REEXEC: "1"}
    direct, swept = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env["WORKBENCH_OUTPUTS"] = tmp
        env.setdefault("WORKBENCH_CACHE", str(ROOT / "outputs" / "cache"))
        for r in range(args.rounds):
            config = {**CONFIG, "model": nano, "seed": r}
            start = time.perf_counter()
            out = str(Path(tmp) / f"direct{r}")
            subprocess.run(
                [sys.executable, "-c", DIRECT, json.dumps(config), out], env=env, check=True, capture_output=True
            )
            direct.append(time.perf_counter() - start)
            sweep_file = Path(tmp) / f"overhead{r}.yaml"
            sweep_file.write_text(yaml.safe_dump({"name": f"overhead{r}", "experiment": "quantise", "fixed": config}))
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "workbench.cli", "sweep", str(sweep_file), "--workers", "1"],
                env=env,
                check=True,
                capture_output=True,
            )
            swept.append(time.perf_counter() - start)
    from workbench import stats

    d, s = stats.percentile(direct, 50), stats.percentile(swept, 50)
    print(f"direct run(config) in a fresh process: {d:.2f} s (median of {args.rounds})")
    print(f"one-point papermill sweep:            {s:.2f} s")
    print(f"overhead per point: {s - d:.2f} s (target <= 3 s: {'met' if s - d <= 3 else 'MISSED'})")
    print(json.dumps({"direct_s": d, "sweep_s": s, "overhead_s": s - d, "rounds": args.rounds}))
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
