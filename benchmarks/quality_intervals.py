"""Paired quality intervals of weight-quantised variants against their baseline, measured as the demo measures them.

The demo's tradeoff points score each variant on the same 100 facts items, 16 held-out stdlib chunks and 8
fidelity prompts as the baseline; this measures exactly that for each bit width (no speed, so it takes a few
minutes on `default`) and prints `quality_compare.quality_comparisons` with `format_quality` lines. With
`--sweep NAME` it reads a finished sweep's rows instead (e.g. `make demo`'s `default`) and measures nothing.

    python benchmarks/quality_intervals.py --model default --bits 4,3,2
    python benchmarks/quality_intervals.py --sweep default
"""

from __future__ import annotations

import argparse
import sys

import polars as pl


def measure(model: str, bits: list[int], *, task_count: int, chunks: int, fidelity: int) -> pl.DataFrame:
    from workbench.measure import evaluate
    from workbench.models import loader
    from workbench.optimise import quantise

    base = loader.load(model)
    settings = {"text": "stdlib", "max_chunks": chunks, "task": "facts", "task_count": task_count}
    frames = [evaluate.run_eval(base, evaluate.EvalSpec(variant="baseline", run_id="bench", **settings))[0]]
    for b in bits:
        variant = loader.load(str(quantise.quantised(model, bits=b, group_size=64)))
        spec = evaluate.EvalSpec(baseline=base, fidelity_count=fidelity, variant=f"q{b}", run_id="bench", **settings)
        frame, _ = evaluate.run_eval(variant, spec)
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed")


def main() -> int:
    from workbench import runtime
    from workbench.analysis import quality_compare
    from workbench.results import store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--bits", default="4,3,2", help="comma-separated weight bits (group size 64)")
    parser.add_argument("--task-count", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--fidelity", type=int, default=8)
    parser.add_argument("--sweep", help="read this finished sweep's rows instead of measuring")
    args = parser.parse_args()
    runtime.ensure_optimised_blas()
    if args.sweep:
        rows = store.load_sweep_results(args.sweep).collect()
    else:
        bits = [int(b) for b in args.bits.split(",") if b.strip()]
        rows = measure(args.model, bits, task_count=args.task_count, chunks=args.chunks, fidelity=args.fidelity)
    for row in quality_compare.quality_comparisons(rows).iter_rows(named=True):
        line = quality_compare.format_quality(row)
        print(f"{row['point_id']:<24} {row['variant']:<12} {row['metric']:<17} n={row['n']:<4} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
