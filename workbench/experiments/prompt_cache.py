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
from dataclasses import dataclass

import polars as pl

from workbench import corpus, measure, models, results, runtime, workloads
from workbench.experiments.base import ExperimentConfig


@dataclass(frozen=True)
class PromptCacheConfig(ExperimentConfig):
    prefix_tokens: int = 512
    requests: int = 8
    gen_tokens: int = 16

    name = "prompt_cache"

    def validate(self):
        self.require(self.prefix_tokens >= 8, "prefix_tokens", "must be >= 8")


def build_workload(tokenizer, config: PromptCacheConfig) -> tuple[list[int], list[list[int]], workloads.Workload]:
    """Prefix tokens (preamble text + a context of facts, exactly `prefix_tokens` long) and question suffixes."""
    shared = workloads.shared_prefix(num_facts=30, count=config.requests, seed=config.seed)
    context = shared.params["prefix"]
    preamble = tokenizer.encode(corpus.heldout_text()[: 20 * config.prefix_tokens])
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    keep = max(config.prefix_tokens - len(context_ids), 1)
    prefix = (preamble[:keep] + context_ids)[-config.prefix_tokens :]
    suffixes = [tokenizer.encode(p[len(context) :], add_special_tokens=False) for p in shared.prompts]
    workload = workloads.Workload(
        "shared_prefix_tokens",
        (tuple(prefix), *map(tuple, suffixes)),
        params={**shared.params, "prefix_tokens": config.prefix_tokens},
    )
    return prefix, suffixes, workload


def _generate(model, tokenizer, tokens, gen_tokens, t0, **kwargs):
    import mlx.core as mx
    from mlx_lm import stream_generate

    times, out = [], []
    for r in stream_generate(model, tokenizer, mx.array(tokens), max_tokens=gen_tokens, **kwargs):
        times.append(time.perf_counter())
        out.append(r.token)
    return times, out


def run(config: PromptCacheConfig) -> pl.DataFrame:
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    run_id = results.new_run_id("prompt_cache")
    loaded = models.load(config.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    prefix, suffixes, workload = build_workload(tokenizer, config)

    cache = make_prompt_cache(model)
    build_start = time.perf_counter()
    mx.eval(model(mx.array(prefix)[None], cache=cache))
    mx.eval([c.state for c in cache])
    build_s = time.perf_counter() - build_start
    cache_bytes = sum(c.nbytes for c in cache)

    rows = []
    with measure.eos_disabled(tokenizer):
        for _ in range(config.warmup):
            _generate(model, tokenizer, prefix + suffixes[0], config.gen_tokens, time.perf_counter())
            _generate(
                model, tokenizer, suffixes[0], config.gen_tokens, time.perf_counter(), prompt_cache=copy.deepcopy(cache)
            )
        for trial in range(config.trials):
            for i, suffix in enumerate(suffixes):
                for variant in ("baseline", "cached"):
                    mx.reset_peak_memory()
                    t0 = time.perf_counter()
                    if variant == "baseline":
                        times, out = _generate(model, tokenizer, prefix + suffix, config.gen_tokens, t0)
                    else:
                        times, out = _generate(
                            model, tokenizer, suffix, config.gen_tokens, t0, prompt_cache=copy.deepcopy(cache)
                        )
                    row = measure.request_metrics(t0, times, len(prefix) + len(suffix))
                    row.update(
                        kind="speed",
                        variant=variant,
                        trial=trial,
                        request_index=i,
                        batch_size=1,
                        window_s=times[-1] - t0,
                        output_tokens=out,
                        peak_mem_bytes=mx.get_peak_memory(),
                    )
                    rows.append(row)
    frames = []
    for variant in ("baseline", "cached"):
        params = {
            "prefix_tokens": len(prefix),
            "cache_bytes": cache_bytes if variant == "cached" else 0,
            "cache_build_s": build_s if variant == "cached" else 0.0,
        }
        frames.append(
            results.to_frame(
                [{k: v for k, v in r.items() if k != "variant"} for r in rows if r["variant"] == variant],
                run_id=run_id,
                experiment=config.name,
                variant=variant,
                model_id=loaded.model_id,
                model_hash=loaded.model_hash,
                backend=runtime.backend(),
                blas=runtime.active_blas(),
                workload=workload.name,
                workload_hash=workload.hash,
                params_json=params,
            )
        )
    return pl.concat(frames, how="vertical")
