"""TTFT with a 512-token shared prefix: full prefill vs starting from the prefix's prompt cache.

    .venv/bin/python benchmarks/prompt_cache_ttft.py [--model default] [--prefix-tokens 512]

Target (issue 3): >= 3x lower TTFT, identical greedy output.
"""

import argparse

from _common import main_guard, report, run_experiment


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--prefix-tokens", type=int, default=512)
    args = parser.parse_args()
    rows = run_experiment(
        "prompt_cache", model=args.model, prefix_tokens=args.prefix_tokens, requests=8, gen_tokens=16, trials=3
    )
    base, cached = rows["baseline"], rows["cached"]
    for name, r in (("no cache", base), ("cached", cached)):
        print(
            f"{name:9} TTFT p50 {r['ttft_s'] * 1e3:7.2f} ms  p90 {r['ttft_s_p90'] * 1e3:7.2f} ms  "
            f"identical {r['identical_to_baseline']}"
        )
    print(f"cache memory {cached['cache_bytes'] / 2**20:.2f} MiB, built in {cached['cache_build_s'] * 1e3:.1f} ms")
    return report(
        "TTFT no-cache / cached",
        base["ttft_s"] / cached["ttft_s"],
        3.0,
        {
            "ttft_s": base["ttft_s"],
            "cached_ttft_s": cached["ttft_s"],
            "cache_bytes": cached["cache_bytes"],
            "identical": cached["identical_to_baseline"],
        },
    )


if __name__ == "__main__":
    main_guard(main)
