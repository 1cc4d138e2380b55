"""Serving: a response cache in front of generation, and routing requests across model tiers.

- response cache: a Zipf-distributed (seeded) stream of repeated task queries served with
  and without an exact-match response cache (in-process LRU, or Redis when `redis_url` is
  given): hit rate, latency percentiles, and the cache's memory;
- tiering: each request goes to the `fast`, `balanced` or `complex` model by prompt length
  (thresholds in tokens), against sending everything to the `complex` model: latency vs
  task accuracy. Tiers are model specs; `distilled` and `quantised:BITS` derive from the
  model under test.

    workbench run serving --params params/serving.yaml [--model M] [--json]
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import polars as pl

from workbench import models, quality, results, runtime, tasks, workloads
from workbench.experiments.base import ExperimentConfig, is_generated, load_spec


@dataclass(frozen=True)
class ServingConfig(ExperimentConfig):
    unique_queries: int = 24
    requests: int = 96
    zipf_s: float = 1.1
    gen_tokens: int = 6
    cache_entries: int = 1024
    redis_url: str | None = None
    tiers: dict = field(default_factory=lambda: {"fast": "distilled", "balanced": "quantised:8", "complex": "default"})
    tier_thresholds: list = field(default_factory=lambda: [60, 90])
    tiering_requests: int = 48

    name = "serving"

    def model_specs(self) -> list[str]:
        return [self.model, *(spec for spec in self.tiers.values() if not is_generated(spec))]

    def validate(self):
        self.require(self.unique_queries >= 1, "unique_queries", "must be >= 1")
        self.require(self.zipf_s > 0, "zipf_s", "must be > 0")
        self.require(self.cache_entries >= 1, "cache_entries", "must be >= 1")
        self.require(
            set(self.tiers) == {"fast", "balanced", "complex"}, "tiers", "must name exactly fast, balanced and complex"
        )
        self.require(
            len(self.tier_thresholds) == 2 and self.tier_thresholds[0] <= self.tier_thresholds[1],
            "tier_thresholds",
            "must be two ascending prompt lengths in tokens",
        )
        self.require(self.tiering_requests >= 0, "tiering_requests", "must be >= 0")


class LRUCache:
    """In-process exact-match response cache with a bound on entries."""

    def __init__(self, max_entries: int):
        self.max_entries, self.data = max_entries, OrderedDict()

    def get(self, key: str):
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def set(self, key: str, value: str) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.max_entries:
            self.data.popitem(last=False)

    def nbytes(self) -> int:
        return sys.getsizeof(self.data) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self.data.items())


class RedisCache:
    """The same interface on Redis (`pip install redis`); memory is Redis's own `used_memory`."""

    def __init__(self, url: str, namespace: str):
        import redis

        self.client, self.namespace = redis.Redis.from_url(url), namespace
        self.client.ping()

    def get(self, key: str):
        value = self.client.get(f"{self.namespace}:{key}")
        return value.decode() if value is not None else None

    def set(self, key: str, value: str) -> None:
        self.client.set(f"{self.namespace}:{key}", value)

    def nbytes(self) -> int:
        return int(self.client.info("memory")["used_memory"])


def zipf_stream(unique: int, count: int, s: float, seed: int) -> list[int]:
    rng = random.Random(f"zipf-{seed}")
    weights = [1 / (rank + 1) ** s for rank in range(unique)]
    return rng.choices(range(unique), weights=weights, k=count)


def _answer(loaded, prompt: str, gen_tokens: int) -> tuple[str, float, float]:
    import mlx.core as mx
    from mlx_lm import stream_generate

    t0 = time.perf_counter()
    first, text = None, ""
    for r in stream_generate(
        loaded.model, loaded.tokenizer, mx.array(loaded.tokenizer.encode(prompt)), max_tokens=gen_tokens
    ):
        first = first or time.perf_counter()
        text += r.text
    end = time.perf_counter()
    return tasks.extract_answer(text), (first or end) - t0, end - t0


def run(config: ServingConfig) -> pl.DataFrame:
    run_id = results.new_run_id("serving")
    loaded = models.load(config.model)
    frames = [response_cache_rows(loaded, config, run_id)]
    if config.tiering_requests:
        frames.append(tiering_rows(loaded, config, run_id))
    return pl.concat(frames, how="vertical")


def _frame(rows, loaded, config, run_id, variant, workload, params):
    return results.to_frame(
        rows,
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


def response_cache_rows(loaded, config: ServingConfig, run_id: str) -> pl.DataFrame:
    pool = workloads.task(count=config.unique_queries, seed=config.seed + 7)
    order = zipf_stream(config.unique_queries, config.requests, config.zipf_s, config.seed)
    workload = workloads.Workload(
        "zipf_queries",
        tuple(pool.prompts[i] for i in order),
        tuple(pool.references[i] for i in order),
        params={"pool": pool.hash, "zipf_s": config.zipf_s, "seed": config.seed},
    )
    cache = RedisCache(config.redis_url, run_id) if config.redis_url else LRUCache(config.cache_entries)
    frames = []
    for variant in ("baseline", "response-cache"):
        rows, start = [], time.perf_counter()
        for i, (prompt, reference) in enumerate(zip(workload.prompts, workload.references)):
            key = hashlib.sha256(f"{loaded.model_hash}|{config.gen_tokens}|{prompt}".encode()).hexdigest()
            t0 = time.perf_counter()
            hit = cache.get(key) if variant != "baseline" else None
            if hit is not None:
                answer, ttft = hit, time.perf_counter() - t0
                e2e = ttft
            else:
                answer, ttft, e2e = _answer(loaded, prompt, config.gen_tokens)
                if variant != "baseline":
                    cache.set(key, answer)
            rows.append(
                {
                    "kind": "speed",
                    "trial": 0,
                    "request_index": i,
                    "ttft_s": ttft,
                    "e2e_s": e2e,
                    "cache_hit": hit is not None,
                    "prediction": answer,
                    "reference": reference,
                    "exact_match": quality.exact_match(answer, reference),
                }
            )
        window = time.perf_counter() - start
        for r in rows:
            r["window_s"] = window
        params = {
            "backend": "redis" if config.redis_url else "memory",
            "zipf_s": config.zipf_s,
            "unique_queries": config.unique_queries,
            "cache_bytes": cache.nbytes() if variant != "baseline" else 0,
        }
        frames.append(_frame(rows, loaded, config, run_id, variant, workload, params))
    return pl.concat(frames, how="vertical")


def route(prompt_tokens: int, thresholds: list[int]) -> str:
    return "fast" if prompt_tokens <= thresholds[0] else "balanced" if prompt_tokens <= thresholds[1] else "complex"


def tiering_rows(target, config: ServingConfig, run_id: str) -> pl.DataFrame:
    loaded = {tier: load_spec(spec, target, config.model) for tier, spec in config.tiers.items()}
    items = tasks.make_items(config.tiering_requests, seed=config.seed + 11, min_facts=2, max_facts=12)
    workload = workloads.Workload(
        "tiering_task",
        tuple(i.prompt for i in items),
        tuple(i.reference for i in items),
        params={"seed": config.seed + 11, "min_facts": 2, "max_facts": 12},
    )
    frames = []
    for variant in ("all-complex", "tiered"):
        rows, start = [], time.perf_counter()
        for i, item in enumerate(items):
            length = len(loaded["complex"].tokenizer.encode(item.prompt))
            tier = "complex" if variant == "all-complex" else route(length, config.tier_thresholds)
            answer, ttft, e2e = _answer(loaded[tier], item.prompt, config.gen_tokens)
            rows.append(
                {
                    "kind": "speed",
                    "trial": 0,
                    "request_index": i,
                    "prompt_tokens": length,
                    "ttft_s": ttft,
                    "e2e_s": e2e,
                    "tier": tier,
                    "prediction": answer,
                    "reference": item.reference,
                    "exact_match": quality.exact_match(answer, item.reference),
                }
            )
        window = time.perf_counter() - start
        for r in rows:
            r["window_s"] = window
        params = {"tiers": {t: m.model_id for t, m in loaded.items()}, "thresholds": config.tier_thresholds}
        frames.append(_frame(rows, loaded["complex"], config, run_id, variant, workload, params))
    return pl.concat(frames, how="vertical")
