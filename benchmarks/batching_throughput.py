"""Throughput at batch 16 vs batch 1 on the same 32 requests, measured side by side in one run.

    .venv/bin/python benchmarks/batching_throughput.py [--model default]

Target (issue 3): >= 5x generated tokens/s.
"""

import argparse

from _common import main_guard, report, run_experiment


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    rows = run_experiment(
        "batching",
        model=args.model,
        batch_sizes=[1, 16],
        requests=32,
        prompt_tokens=128,
        gen_tokens=32,
        trials=2,
        continuous=False,
        perplexity_chunks=0,
        task_count=0,
    )
    base, b16 = rows["baseline"], rows["batch16"]
    for name, r in (("batch 1", base), ("batch 16", b16)):
        print(
            f"{name:9} throughput {r['throughput_tps']:8.1f} tok/s  TTFT p50 {r['ttft_s'] * 1e3:7.1f} ms  "
            f"E2E p50 {r['e2e_s']:.3f} s  peak {r['peak_mem_bytes'] / 2**20:.1f} MiB  "
            f"identical {r['identical_to_baseline']}"
        )
    return report(
        "batch 16 / batch 1 throughput",
        b16["throughput_tps"] / base["throughput_tps"],
        5.0,
        {
            "batch1_tps": base["throughput_tps"],
            "batch16_tps": b16["throughput_tps"],
            "identical": b16["identical_to_baseline"],
        },
    )


if __name__ == "__main__":
    main_guard(main)
