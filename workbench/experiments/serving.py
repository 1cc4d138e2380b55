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
from typing import ClassVar

import polars as pl
from pydantic import Field

from workbench import derived, measure, models, quality, results, tasks, workloads
from workbench.experiments.base import ExperimentConfig, Variant, model_identity

TIERS = ("fast", "balanced", "complex")


class Config(ExperimentConfig):
    name: ClassVar[str] = "serving"

    unique_queries: int = Field(24, ge=1, le=100_000)
    requests: int = Field(96, ge=1, le=100_000)
    zipf_s: float = Field(1.1, gt=0)
    gen_tokens: int = Field(6, ge=1, le=8192)
    cache_entries: int = Field(1024, ge=1)
    redis_url: str | None = None
    tiers: dict[str, str] = Field(
        default_factory=lambda: {"fast": "distilled", "balanced": "quantised:8", "complex": "default"}
    )
    tier_thresholds: list[int] = Field(default_factory=lambda: [60, 90], min_length=2, max_length=2)
    tiering_requests: int = Field(48, ge=0, le=100_000)

    def model_specs(self) -> list[str]:
        return [self.model, *self.tiers.values()]

    def check(self):
        self.require(set(self.tiers) == set(TIERS), "tiers", "must name exactly fast, balanced and complex")
        self.require(
            self.tier_thresholds[0] <= self.tier_thresholds[1],
            "tier_thresholds",
            "must be two ascending prompt lengths in tokens",
        )


NO_CACHE = Variant("baseline", quality=("task",))
RESPONSE_CACHE = Variant(
    "response-cache",
    family="response-cache",
    changes={"response_cache": "exact match"},
    lossless=True,
    quality=("task",),
)
ALL_COMPLEX = Variant("all-complex", quality=("task",))


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
    timeline = measure.stream_timed(loaded.model, loaded.tokenizer, loaded.tokenizer.encode(prompt), gen_tokens)
    end = timeline.token_times[-1] if timeline.token_times else timeline.t0
    first = timeline.token_times[0] if timeline.token_times else end
    return tasks.extract_answer(timeline.text), first - timeline.t0, end - timeline.t0


def run(config: Config) -> pl.DataFrame:
    run_id = results.new_run_id("serving")
    loaded = models.load(config.model, dtype=config.dtype)
    frames = [response_cache_rows(loaded, config, run_id)]
    if config.tiering_requests:
        frames.append(tiering_rows(loaded, config, run_id))
    return pl.concat(frames, how="diagonal_relaxed")


def _frame(rows, loaded, config, run_id, variant: Variant, workload, params):
    """Speed rows, plus each answer as a `task` row so task accuracy is measured per variant."""
    task_keys = ("round", "request_index", "prediction", "reference", "exact_match", "tier")
    task_rows = [{"kind": "task", **{k: r.get(k) for k in task_keys}} for r in rows if r["round"] == 0]
    identity = variant.identity(run_id=run_id, experiment=config.name, params_json=params)
    return results.to_frame(rows + task_rows, **identity, **model_identity(loaded, workload))


def response_cache_rows(loaded, config: Config, run_id: str) -> pl.DataFrame:
    pool = workloads.task(count=config.unique_queries, seed=config.seed + 7)
    order = zipf_stream(config.unique_queries, config.requests, config.zipf_s, config.seed)
    workload = workloads.Workload(
        "zipf_queries",
        tuple(pool.prompts[i] for i in order),
        tuple(pool.references[i] for i in order),
        params={"pool": pool.hash, "zipf_s": config.zipf_s, "seed": config.seed},
    )
    rows = {NO_CACHE.name: [], RESPONSE_CACHE.name: []}
    cache_bytes = 0
    for round_index in range(config.rounds):
        # a fresh cache per round, so each round starts cold; variants alternate within the round
        cache = (
            RedisCache(config.redis_url, f"{run_id}-{round_index}")
            if config.redis_url
            else LRUCache(config.cache_entries)
        )
        window = {NO_CACHE.name: 0.0, RESPONSE_CACHE.name: 0.0}
        start_rows = {k: len(v) for k, v in rows.items()}
        for i, (prompt, reference) in enumerate(zip(workload.prompts, workload.references)):
            for variant in (NO_CACHE, RESPONSE_CACHE):
                key = hashlib.sha256(f"{loaded.model_hash}|{config.gen_tokens}|{prompt}".encode()).hexdigest()
                t0 = time.perf_counter()
                hit = cache.get(key) if variant is RESPONSE_CACHE else None
                if hit is not None:
                    answer, ttft = hit, time.perf_counter() - t0
                    e2e = ttft
                else:
                    answer, ttft, e2e = _answer(loaded, prompt, config.gen_tokens)
                    if variant is RESPONSE_CACHE:
                        cache.set(key, answer)
                window[variant.name] += e2e
                rows[variant.name].append(
                    {
                        "kind": "speed",
                        "round": round_index,
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
        for name, variant_rows in rows.items():
            for row in variant_rows[start_rows[name] :]:
                row["window_s"] = window[name]
        cache_bytes = max(cache_bytes, cache.nbytes())
    frames = []
    for variant in (NO_CACHE, RESPONSE_CACHE):
        params = {
            "backend": "redis" if config.redis_url else "memory",
            "zipf_s": config.zipf_s,
            "unique_queries": config.unique_queries,
            "cache_bytes": cache_bytes if variant is RESPONSE_CACHE else 0,
        }
        frames.append(_frame(rows[variant.name], loaded, config, run_id, variant, workload, params))
    return pl.concat(frames, how="vertical")


def route(prompt_tokens: int, thresholds: list[int]) -> str:
    return "fast" if prompt_tokens <= thresholds[0] else "balanced" if prompt_tokens <= thresholds[1] else "complex"


def tiered_variant(config: Config, loaded: dict) -> Variant:
    changes = {"tiers": {t: m.model_id for t, m in loaded.items()}, "thresholds": config.tier_thresholds}
    return Variant("tiered", family="tiering", changes=changes, quality=("task",))


def tiering_rows(target, config: Config, run_id: str) -> pl.DataFrame:
    loaded = {
        tier: derived.load_spec(spec, target, config.model, dtype=config.dtype) for tier, spec in config.tiers.items()
    }
    items = tasks.make_items(config.tiering_requests, seed=config.seed + 11, min_facts=2, max_facts=12)
    workload = workloads.Workload(
        "tiering_task",
        tuple(i.prompt for i in items),
        tuple(i.reference for i in items),
        params={"seed": config.seed + 11, "min_facts": 2, "max_facts": 12},
    )
    tiered = tiered_variant(config, loaded)
    frames = []
    for variant in (ALL_COMPLEX, tiered):
        rows = []
        for round_index in range(config.rounds):
            start, batch = time.perf_counter(), []
            for i, item in enumerate(items):
                length = len(loaded["complex"].tokenizer.encode(item.prompt))
                tier = "complex" if variant is ALL_COMPLEX else route(length, config.tier_thresholds)
                answer, ttft, e2e = _answer(loaded[tier], item.prompt, config.gen_tokens)
                batch.append(
                    {
                        "kind": "speed",
                        "round": round_index,
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
            rows.extend({**r, "window_s": window} for r in batch)
        frames.append(_frame(rows, loaded["complex"], config, run_id, variant, workload, tiered.changes))
    return pl.concat(frames, how="vertical")


def summary_extras(frame: pl.DataFrame) -> dict:
    """Cache hit rate, E2E percentiles, and task accuracy per tier and overall."""
    from workbench import stats

    speed = frame.filter(kind="speed")
    out = {}
    for (variant,), group in speed.group_by("variant"):
        figures = {"hit_rate": group["cache_hit"].drop_nulls().mean()}
        figures.update({f"e2e_s_p{p}": stats.percentile(group["e2e_s"].to_list(), p) for p in stats.PERCENTILES})
        tiers = group.filter(pl.col("tier").is_not_null())
        if tiers.height:
            per_tier = tiers.group_by("tier").agg(pl.col("exact_match").mean(), pl.len().alias("requests"))
            figures["task_accuracy_by_tier"] = {r["tier"]: r["exact_match"] for r in per_tier.to_dicts()}
            figures["requests_by_tier"] = {r["tier"]: r["requests"] for r in per_tier.to_dicts()}
        out[variant] = figures
    return out
