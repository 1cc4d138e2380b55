"""Shared by the experiment benchmarks: run an experiment config, print a ratio against a target."""

from __future__ import annotations

import json
import sys


def run_experiment(name: str, **values) -> dict:
    from workbench import experiments, runtime
    from workbench.analysis import run_summary

    runtime.ensure_optimised_blas()
    config = experiments.build_config(name, None, values)
    experiments.check_models(config)
    frame = experiments.get(name).run(config)
    return {s["variant"]: s for s in run_summary.variant_summaries(name, frame)}


def report(title: str, ratio: float, target: float, extra: dict) -> int:
    from workbench import runtime

    met = ratio >= target
    print(
        f"{title}: {ratio:.2f}x (target >= {target}x: {'met' if met else 'MISSED'}) on {runtime.backend()}, "
        f"{runtime.active_blas()}"
    )
    print(json.dumps({"ratio": ratio, "target": target, "met": met, **extra}, default=str))
    return 0


def main_guard(fn):
    sys.exit(fn())
