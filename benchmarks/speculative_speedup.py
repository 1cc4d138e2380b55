"""Decode tok/s with the distilled draft vs without, same prompts, side by side in one run.

    .venv/bin/python benchmarks/speculative_speedup.py [--model default] [--draft distilled]

Target (issue 3): >= 1.3x decode tok/s with identical greedy output.
"""

import argparse

from _common import main_guard, report, run_experiment


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--draft", default="distilled")
    args = parser.parse_args()
    rows = run_experiment(
        "speculative",
        model=args.model,
        draft=args.draft,
        num_draft_tokens=[1, 2, 3, 4, 6],
        prompt_tokens=128,
        gen_tokens=64,
        requests=4,
        trials=2,
    )
    base = rows.pop("baseline")
    print(f"baseline decode {base['decode_tps']:.1f} tok/s")
    for name, r in rows.items():
        print(
            f"{name:8} decode {r['decode_tps']:8.1f} tok/s  speedup {r['decode_speedup']:.2f}x  "
            f"acceptance {r['acceptance_rate']:.2f}  by position "
            f"{[round(a, 2) if a is not None else None for a in r['acceptance_by_position']]}  "
            f"identical {r['identical_to_baseline']}"
        )
    best = max(rows.values(), key=lambda r: r["decode_speedup"] if r["identical_to_baseline"] else 0)
    return report(
        f"best speculative ({best['variant']}) / baseline decode",
        best["decode_speedup"],
        1.3,
        {
            "variant": best["variant"],
            "identical": best["identical_to_baseline"],
            "acceptance_rate": best["acceptance_rate"],
        },
    )


if __name__ == "__main__":
    main_guard(main)
