"""Stock (reference) BLAS vs the optimised one, measured side by side in one run.

Each configuration runs in its own child process, because LD_PRELOAD only acts at process
start: one child with the BLAS bundled in the mlx-cpu wheel, one with the optimised BLAS
preloaded as the workbench does for every process. Both time a 512x512 fp32 matmul and a
forward pass of the default model (batch 4 x 128 tokens).

    .venv/bin/python benchmarks/blas_speedup.py [--model default] [--repeats 20]

Target (issue 2): >= 8x on the forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TARGET_FORWARD = 8.0


def child(model_spec: str, repeats: int) -> dict:
    import mlx.core as mx

    from workbench import runtime, stats
    from workbench.models import loader

    def timed(fn):
        for _ in range(3):
            mx.eval(fn())
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            mx.eval(fn())
            samples.append(time.perf_counter() - start)
        return stats.percentile(samples, 50)

    a = mx.random.normal((512, 512), key=mx.random.key(0))
    b = mx.random.normal((512, 512), key=mx.random.key(1))
    loaded = loader.load(model_spec)
    tokens = mx.random.randint(0, loaded.config["vocab_size"], (4, 128), key=mx.random.key(2))
    return {
        "blas": runtime.active_blas(),
        "matmul_s": timed(lambda: a @ b),
        "forward_s": timed(lambda: loaded.model(tokens)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.repeats)))
        return 0

    from workbench import runtime
    from workbench.models import loader

    if runtime.find_optimised_blas() is None:
        print(f"no optimised BLAS on this machine; install it with: {runtime.FIX_COMMAND}")
        return 1
    loader.resolve(args.model)  # build or fetch once, outside the timed children
    base = {k: v for k, v in os.environ.items() if k not in {"LD_PRELOAD", "WORKBENCH_BLAS_REEXEC"}}
    stock_env = {**base, runtime.NO_REEXEC: "1"}
    fast_env = {**runtime.blas_env(base), runtime.NO_REEXEC: "1"}
    cmd = [sys.executable, __file__, "--child", "--model", args.model, "--repeats", str(args.repeats)]
    runs = {}
    for name, env in (("stock", stock_env), ("optimised", fast_env)):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        runs[name] = json.loads(out.strip().splitlines()[-1])
    stock, fast = runs["stock"], runs["optimised"]
    print(f"{'':10} {'blas':40} {'matmul 512^2':>14} {'forward 4x128':>14}")
    for name, r in runs.items():
        print(f"{name:10} {r['blas']:40} {r['matmul_s'] * 1e3:11.2f} ms {r['forward_s'] * 1e3:11.1f} ms")
    matmul_ratio = stock["matmul_s"] / fast["matmul_s"]
    forward_ratio = stock["forward_s"] / fast["forward_s"]
    print(
        f"speedup: matmul {matmul_ratio:.1f}x, forward pass {forward_ratio:.1f}x "
        f"(target >= {TARGET_FORWARD:.0f}x: {'met' if forward_ratio >= TARGET_FORWARD else 'MISSED'})"
    )
    print(
        json.dumps(
            {
                "matmul_speedup": matmul_ratio,
                "forward_speedup": forward_ratio,
                **{f"{n}_{k}": v for n, r in runs.items() for k, v in r.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
