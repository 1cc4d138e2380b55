"""Prompt caching: a shared prefix (system prompt + retrieved context) prefilled once, reused per request.

Baseline: every request prefills prefix + question. Cached: the prefix's KV cache is
built once with mlx-lm's `make_prompt_cache`, and each request starts from a copy of it
and prefills only its question (the copy is inside the timed TTFT). Rows give TTFT with and
without the cache, the cache's memory, and whether greedy outputs are identical.

    workbench run prompt_cache --params params/prompt_cache.yaml [--model M] [--json]
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from workbench.experiments import rounds
from workbench.experiments.base import ExperimentConfig, Variant, baseline_variant
from workbench.measure import timed
from workbench.models import loader
from workbench.results import store
from workbench.workloads import corpus, prompt_sets


class Config(ExperimentConfig):
    name: ClassVar[str] = "prompt_cache"
    takes_workload: ClassVar[bool] = False  # its own prompts (base.ExperimentConfig.check_workload)

    prefix_tokens: int = Field(512, ge=8, le=32768)
    requests: int = Field(8, ge=1, le=4096)
    gen_tokens: int = Field(16, ge=1, le=8192)

    def longest_sequence(self) -> int:
        return self.prefix_tokens + 64 + self.gen_tokens  # the prefix, a question, the answer


UNCACHED = baseline_variant(quality=())  # quality is not measured here: caching the prefix keeps the weights
CACHED = Variant("cached", family="prompt-cache", changes={"prompt_cache": "shared prefix"}, lossless=True)


def build_workload(tokenizer, config: Config) -> tuple[list[int], list[list[int]], prompt_sets.Workload]:
    """Prefix tokens (preamble text + a context of facts, exactly `prefix_tokens` long) and question suffixes."""
    shared = prompt_sets.shared_prefix(num_facts=30, count=config.requests, seed=config.seed)
    context = shared.params["prefix"]
    preamble = tokenizer.encode(corpus.heldout_text()[: 20 * config.prefix_tokens])
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    keep = max(config.prefix_tokens - len(context_ids), 1)
    prefix = (preamble[:keep] + context_ids)[-config.prefix_tokens :]
    suffixes = [tokenizer.encode(p[len(context) :], add_special_tokens=False) for p in shared.prompts]
    workload = prompt_sets.Workload(
        "shared_prefix_tokens",
        (tuple(prefix), *map(tuple, suffixes)),
        params={**shared.params, "prefix_tokens": config.prefix_tokens},
    )
    return prefix, suffixes, workload


def run(config: Config) -> pl.DataFrame:
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    run_id = store.new_run_id("prompt_cache")
    loaded = loader.load(config.model, dtype=config.dtype)
    model, tokenizer = loaded.model, loaded.tokenizer
    prefix, suffixes, workload = build_workload(tokenizer, config)

    cache = make_prompt_cache(model)
    build_start = time.perf_counter()
    mx.eval(model(mx.array(prefix)[None], cache=cache))
    mx.eval([c.state for c in cache])
    build_s = time.perf_counter() - build_start
    cache_bytes = sum(c.nbytes for c in cache)

    def request(variant: Variant, suffix: list[int]) -> timed.Timeline:
        if variant is UNCACHED:
            return timed.stream_timed(model, tokenizer, prefix + suffix, config.gen_tokens)
        # the copy of the prefix cache is inside the timed TTFT
        t0 = time.perf_counter()
        timeline = timed.stream_timed(model, tokenizer, suffix, config.gen_tokens, prompt_cache=copy.deepcopy(cache))
        timeline.t0, timeline.prompt_tokens = t0, len(prefix) + len(suffix)
        return timeline

    def measure_round(round_index: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict[str, Any]]] = {UNCACHED.name: [], CACHED.name: []}
        for _ in range(config.warmup):  # each round warms both paths up again
            for variant in (UNCACHED, CACHED):
                request(variant, suffixes[0])
        for trial in range(config.trials):
            trial_rows: dict[str, list[dict[str, Any]]] = {UNCACHED.name: [], CACHED.name: []}
            for i, suffix in enumerate(suffixes):
                for variant in (UNCACHED, CACHED):  # alternating request by request
                    mx.reset_peak_memory()
                    timeline = request(variant, suffix)
                    metrics = timeline.metrics()
                    trial_rows[variant.name].append(
                        {
                            **metrics,
                            "kind": "speed",
                            "round": round_index,
                            "trial": trial,
                            "request_index": i,
                            "batch_size": 1,
                            "output_tokens": timeline.tokens,
                            "peak_mem_bytes": mx.get_peak_memory(),
                        }
                    )
            for name, trial_list in trial_rows.items():  # a trial's window: its requests, back to back
                window = sum(r["e2e_s"] for r in trial_list)
                out[name].extend({**r, "window_s": window} for r in trial_list)
        return out

    with timed.eos_disabled(tokenizer):
        rows, _ = rounds.run_rounds(config, measure_round, desc="prompt_cache rounds")
    frames = []
    for variant in (UNCACHED, CACHED):
        cached = variant is CACHED
        params = {
            "prefix_tokens": len(prefix),
            "cache_bytes": cache_bytes if cached else 0,
            "cache_build_s": build_s if cached else 0.0,
        }
        identity = variant.identity(run_id=run_id, experiment=config.name, params_json=params)
        frames.append(store.to_frame(rows[variant.name], **identity, **store.model_identity(loaded, workload)))
    return pl.concat(frames, how="vertical")
