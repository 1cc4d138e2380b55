"""Model tiering: route each request to the `fast`, `balanced` or `complex` model by prompt length.

The baseline sends every request to the `complex` tier; the `tiered` variant routes by
prompt length (`tier_thresholds`, in tokens). Both serve the same task items in
interleaved rounds, after a warm-up of every tier's model. Tiering changes the model that
answers, so its task accuracy is measured, overall and per tier, never inherited. Tiers are
model specs; `distilled` and `quantised:BITS` derive from the model under test.

    workbench run tiering --params params/tiering.yaml [--model M] [--json]
"""

from __future__ import annotations

import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from workbench.experiments import rounds
from workbench.experiments.base import ExperimentConfig, Variant
from workbench.measure import quality, timed
from workbench.models import loader
from workbench.optimise import derived
from workbench.results import store
from workbench.workloads import prompt_sets, tasks

TIERS = ("fast", "balanced", "complex")


class Config(ExperimentConfig):
    name: ClassVar[str] = "tiering"
    takes_workload: ClassVar[bool] = False  # its own prompts (base.ExperimentConfig.check_workload)

    requests: int = Field(48, ge=1, le=100_000)
    gen_tokens: int = Field(6, ge=1, le=8192)
    tiers: dict[str, str] = Field(
        default_factory=lambda: {"fast": "distilled", "balanced": "quantised:8", "complex": "default"}
    )
    tier_thresholds: list[int] = Field(default_factory=lambda: [60, 90], min_length=2, max_length=2)

    def model_specs(self) -> list[str]:
        return [self.model, *self.tiers.values()]

    def check(self):
        self.require(set(self.tiers) == set(TIERS), "tiers", "must name exactly fast, balanced and complex")
        self.require(
            self.tier_thresholds[0] <= self.tier_thresholds[1],
            "tier_thresholds",
            "must be two ascending prompt lengths in tokens",
        )


ALL_COMPLEX = Variant("baseline", family="baseline", changes={}, quality=("task",))


def route(prompt_tokens: int, thresholds: list[int]) -> str:
    return "fast" if prompt_tokens <= thresholds[0] else "balanced" if prompt_tokens <= thresholds[1] else "complex"


def answer(loaded, prompt: list[int], gen_tokens: int) -> dict:
    """One request, timed: the speed row's figures plus the extracted answer."""
    timeline = timed.stream_timed(loaded.model, loaded.tokenizer, prompt, gen_tokens)
    return {**timeline.metrics(), "prediction": tasks.extract_answer(timeline.text)}


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("tiering")
    target = loader.load(config.model, dtype=config.dtype)
    loaded = {
        tier: derived.load_spec(spec, target, config.model, dtype=config.dtype) for tier, spec in config.tiers.items()
    }
    items = tasks.make_items(config.requests, seed=config.seed + 11, min_facts=2, max_facts=12)
    workload = prompt_sets.Workload(
        "tiering_task",
        tuple(i.prompt for i in items),
        tuple(i.reference for i in items),
        params={"seed": config.seed + 11, "min_facts": 2, "max_facts": 12},
    )
    prompts = [loaded["complex"].tokenizer.encode(item.prompt) for item in items]
    changes = {"tiers": {t: m.model_id for t, m in loaded.items()}, "thresholds": config.tier_thresholds}
    tiered = Variant("tiered", family="tiering", changes=changes, quality=("task",))
    routes = {
        ALL_COMPLEX.name: ["complex"] * len(items),
        tiered.name: [route(len(p), config.tier_thresholds) for p in prompts],
    }
    for tier in set(routes[tiered.name]) | {"complex"}:
        for _ in range(config.warmup):
            answer(loaded[tier], prompts[0], config.gen_tokens)

    def measure_round(round_index: int) -> dict[str, list[dict]]:
        out = {}
        order = (ALL_COMPLEX, tiered) if round_index % 2 == 0 else (tiered, ALL_COMPLEX)
        for variant in order:
            start, batch = time.perf_counter(), []
            for i, (item, prompt, tier) in enumerate(zip(items, prompts, routes[variant.name])):
                row = answer(loaded[tier], prompt, config.gen_tokens)
                exact = quality.exact_match(row["prediction"], item.reference)
                batch.append(
                    {
                        **row,
                        "round": round_index,
                        "trial": 0,
                        "request_index": i,
                        "tier": tier,
                        "reference": item.reference,
                        "exact_match": exact,
                    }
                )
            window = time.perf_counter() - start
            out[variant.name] = [{**r, "kind": "speed", "window_s": window} for r in batch]
        return out

    rows, _ = rounds.run_rounds(config, measure_round, desc="tiering rounds")
    frames = []
    for variant in (ALL_COMPLEX, tiered):
        speed = rows[variant.name]
        task_keys = ("request_index", "prediction", "reference", "exact_match", "tier")
        task_rows = [{"kind": "task", **{k: r[k] for k in task_keys}} for r in speed if r["round"] == 0]
        identity = variant.identity(run_id=run_id, experiment=config.name, params_json=changes)
        frames.append(
            store.to_frame(speed + task_rows, **identity, **store.model_identity(loaded["complex"], workload))
        )
    return pl.concat(frames, how="vertical")


def summary_extras(frame: pl.DataFrame) -> dict:
    """Task accuracy and request count per tier."""
    out = {}
    for (variant,), group in frame.filter(kind="task").group_by("variant"):
        per_tier = group.group_by("tier").agg(pl.col("exact_match").mean(), pl.len().alias("requests"))
        out[variant] = {
            "task_accuracy_by_tier": {r["tier"]: r["exact_match"] for r in per_tier.to_dicts()},
            "requests_by_tier": {r["tier"]: r["requests"] for r in per_tier.to_dicts()},
        }
    return out
