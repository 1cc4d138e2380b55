"""Response cache: an exact-match cache of answers in front of generation (formerly the `serving` experiment).

A Zipf-distributed (seeded) stream of repeated task queries is served with and without the
cache (in-process LRU, or Redis when `redis_url` is given), the two alternating request by
request within each round, with a fresh (cold) cache per round and a warm-up first: hit
rate, latency percentiles, throughput, task accuracy (measured on every answer served) and
the cache's memory. Routing across model tiers is the `tiering` experiment.

    workbench run response_cache --params params/response_cache.yaml [--model M] [--json]
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from collections import OrderedDict
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from workbench.errors import ConfigError
from workbench.experiments import rounds
from workbench.experiments.base import ExperimentConfig, Variant
from workbench.measure import quality, timed
from workbench.models import loader
from workbench.redact import redact_text
from workbench.results import store
from workbench.workloads import prompt_sets, tasks


class Config(ExperimentConfig):
    name: ClassVar[str] = "response_cache"
    takes_workload: ClassVar[bool] = False  # its own prompts (base.ExperimentConfig.check_workload)

    unique_queries: int = Field(24, ge=1, le=100_000)
    requests: int = Field(96, ge=1, le=100_000)
    zipf_s: float = Field(1.1, gt=0)
    gen_tokens: int = Field(6, ge=1, le=8192)
    cache_entries: int = Field(1024, ge=1)
    redis_url: str | None = None
    redis_url_env: str | None = Field(None, description="environment variable holding the Redis URL (a password)")

    def check(self) -> None:
        self.require(not (self.redis_url and self.redis_url_env), "redis_url_env", "give redis_url or it, not both")

    def redis(self) -> str | None:
        """The Redis URL: `redis_url`, or read from the environment variable `redis_url_env` (never stored)."""
        if not self.redis_url_env:
            return self.redis_url
        url = os.environ.get(self.redis_url_env)
        if not url:
            raise ConfigError(f"response_cache.redis_url_env: the environment variable {self.redis_url_env} is not set")
        return url

    def check_model(self, model_config: dict) -> None:
        """Before anything is measured: the Redis at `redis_url`, if given, answers."""
        if url := self.redis():
            connect_redis(url)


NO_CACHE = Variant("baseline", quality=("task",))
RESPONSE_CACHE = Variant(
    "response-cache",
    family="response-cache",
    changes={"response_cache": "exact match"},
    lossless=True,
    quality=("task",),
)


class LRUCache:
    """In-process exact-match response cache with a bound on entries."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self.data: OrderedDict[str, Any] = OrderedDict()

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
    """The same interface on a Redis server (`pip install redis`), each round under its own key prefix.

    Its memory is what Redis itself reports: `MEMORY USAGE` summed over this cache's keys
    (`nbytes`), and the server's whole `used_memory`. `clear` deletes the keys once measured.

    Redis failing mid-run fails a lookup, not the run: a `get` or `set` that raises is a cache miss, and its
    reason is kept in `last_error` for that request's row; after `MAX_FAILURES` failures in a row Redis is not
    asked again this round (each lookup is then a miss saying so). Memory figures of a dead Redis are None."""

    MAX_FAILURES = 3

    def __init__(self, url: str, namespace: str):
        self.namespace, self.failures, self.errors = namespace, 0, 0
        self.last_error: str | None = None
        try:
            self.client = connect_redis(url)
        except ConfigError:  # gone since the run began: this round's lookups are misses that say so
            self.client, self.failures = None, self.MAX_FAILURES

    def _call(self, method: str, *args):
        import redis

        self.last_error = None
        if self.failures >= self.MAX_FAILURES:
            self.last_error = f"cache: Redis not asked after {self.failures} failures in a row"
            self.errors += 1
            return None
        try:
            value = getattr(self.client, method)(*args)
        except (redis.RedisError, OSError) as exc:
            self.failures += 1
            self.errors += 1
            self.last_error = redact_text(f"cache: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
            return None
        self.failures = 0
        return value

    def get(self, key: str):
        value = self._call("get", f"{self.namespace}:{key}")
        return value.decode() if value is not None else None

    def set(self, key: str, value: str) -> None:
        self._call("set", f"{self.namespace}:{key}", value)

    def keys(self) -> list[bytes] | None:
        if self.client is None:
            return None
        try:
            return list(self.client.scan_iter(match=f"{self.namespace}:*", count=1000))
        except Exception:  # redis.RedisError or a socket error: the figure is unknown, not the run's end
            return None

    def nbytes(self) -> int | None:
        keys = self.keys()
        if keys is None:
            return None
        sizes = [self._call("memory_usage", key) for key in keys]
        return None if self.last_error else sum(int(size or 0) for size in sizes)

    def used_memory(self) -> int | None:
        info = self._call("info", "memory")
        return int(info["used_memory"]) if isinstance(info, dict) else None

    def clear(self) -> None:
        keys = self.keys()
        if keys:
            self._call("delete", *keys)


def connect_redis(url: str):
    """A client that has answered PING; a missing package or an unreachable server is a one-line ConfigError."""
    try:
        import redis
    except ImportError:
        raise ConfigError("response_cache.redis_url: the redis client is not installed (pip install redis)") from None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        client.ping()
    except (ValueError, redis.RedisError) as exc:
        raise ConfigError(redact_text(f"response_cache.redis_url: no Redis answers at {url!r} ({exc})")) from None
    return client


def zipf_stream(unique: int, count: int, s: float, seed: int) -> list[int]:
    rng = random.Random(f"zipf-{seed}")
    weights = [1 / (rank + 1) ** s for rank in range(unique)]
    return rng.choices(range(unique), weights=weights, k=count)


def _answer(loaded, prompt: str, gen_tokens: int) -> dict:
    """One generated answer, timed: TTFT, E2E, token counts and the extracted answer."""
    timeline = timed.stream_timed(loaded.model, loaded.tokenizer, loaded.tokenizer.encode(prompt), gen_tokens)
    metrics = timeline.metrics()
    keep = ("prompt_tokens", "generated_tokens", "ttft_s", "e2e_s", "tpot_s", "itl_s", "decode_tps", "prefill_tps")
    return {**{k: metrics[k] for k in keep}, "prediction": tasks.extract_answer(timeline.text)}


def run(config: Config) -> pl.DataFrame:
    run_id = store.new_run_id("response_cache")
    if url := config.redis():
        connect_redis(url)
    loaded = loader.load(config.model, dtype=config.dtype)
    rows: dict[str, list[dict[str, Any]]] = {NO_CACHE.name: [], RESPONSE_CACHE.name: []}
    try:
        return response_cache_rows(loaded, config, run_id, rows)
    except BaseException:  # a fault (ours, or Ctrl-C): the rows measured so far are kept first
        store.rescue_partial(rows, run_id=run_id, experiment=config.name, params=config.to_dict())
        raise


def _frame(rows, loaded, config, run_id, variant: Variant, workload, params):
    """Speed rows, plus each answer as a `task` row so task accuracy is measured per variant."""
    task_keys = ("round", "request_index", "prediction", "reference", "exact_match")
    task_rows = [{"kind": "task", **{k: r.get(k) for k in task_keys}} for r in rows if r["round"] == 0]
    identity = variant.identity(run_id=run_id, experiment=config.name, params_json=params)
    return store.to_frame(rows + task_rows, **identity, **store.model_identity(loaded, workload))


def response_cache_rows(loaded, config: Config, run_id: str, rows: dict) -> pl.DataFrame:
    """Both variants' rows, added to `rows` (variant -> rows) as they are measured."""
    pool = prompt_sets.task(count=config.unique_queries, seed=config.seed + 7)
    order = zipf_stream(config.unique_queries, config.requests, config.zipf_s, config.seed)
    workload = prompt_sets.Workload(
        "zipf_queries",
        tuple(pool.prompts[i] for i in order),
        tuple(pool.references[i] for i in order),
        params={"pool": pool.hash, "zipf_s": config.zipf_s, "seed": config.seed},
    )
    memory: dict[str, Any] = {"cache_bytes": 0, "cache_keys": 0, "redis_used_memory_bytes": None}
    redis_url = config.redis()
    for _ in range(config.warmup):
        _answer(loaded, workload.prompts[0], config.gen_tokens)

    def measure_round(round_index: int) -> dict[str, list[dict]]:
        # a fresh cache per round, so each round starts cold; variants alternate within the round
        cache = RedisCache(redis_url, f"{run_id}-{round_index}") if redis_url else LRUCache(config.cache_entries)
        window = {NO_CACHE.name: 0.0, RESPONSE_CACHE.name: 0.0}
        out: dict[str, list[dict[str, Any]]] = {NO_CACHE.name: [], RESPONSE_CACHE.name: []}
        for i, (prompt, reference) in enumerate(zip(workload.prompts, workload.references)):
            for variant in (NO_CACHE, RESPONSE_CACHE):
                key = hashlib.sha256(f"{loaded.model_hash}|{config.gen_tokens}|{prompt}".encode()).hexdigest()
                t0 = time.perf_counter()
                hit = cache.get(key) if variant is RESPONSE_CACHE else None
                problem = getattr(cache, "last_error", None) if variant is RESPONSE_CACHE else None
                if hit is not None:  # served from the cache: the stored answer, counted as the tokens it had
                    served = time.perf_counter() - t0
                    answer, tokens = hit.split("\x00", 1)
                    row = {"ttft_s": served, "e2e_s": served, "generated_tokens": int(tokens), "prediction": answer}
                else:
                    row = _answer(loaded, prompt, config.gen_tokens)
                    if variant is RESPONSE_CACHE:
                        cache.set(key, f"{row['prediction']}\x00{row['generated_tokens']}")
                        problem = problem or getattr(cache, "last_error", None)
                if problem:
                    row["error"] = problem  # a cache failure: this request was a miss, served by the model
                window[variant.name] += row["e2e_s"]
                exact = quality.exact_match(row["prediction"], reference)
                out[variant.name].append(
                    {
                        **row,
                        "kind": "speed",
                        "round": round_index,
                        "trial": 0,
                        "request_index": i,
                        "cache_hit": hit is not None,
                        "reference": reference,
                        "exact_match": exact,
                    }
                )
        for name, variant_rows in out.items():
            for row in variant_rows:
                row["window_s"] = window[name]
        memory["cache_bytes"] = max(memory["cache_bytes"], cache.nbytes() or 0)
        if isinstance(cache, RedisCache):
            memory["cache_keys"] = max(memory["cache_keys"], len(cache.keys() or []))
            used = cache.used_memory()
            if used is not None:
                memory["redis_used_memory_bytes"] = max(memory["redis_used_memory_bytes"] or 0, used)
            cache.clear()
            memory["cache_errors"] = memory.get("cache_errors", 0) + cache.errors
        else:
            memory["cache_keys"] = max(memory["cache_keys"], len(cache.data))
        return out

    rows, _ = rounds.run_rounds(config, measure_round, desc="serving rounds")
    frames = []
    for variant in (NO_CACHE, RESPONSE_CACHE):
        params = {
            "backend": "redis" if redis_url else "memory",
            "zipf_s": config.zipf_s,
            "unique_queries": config.unique_queries,
            **(memory if variant is RESPONSE_CACHE else {"cache_bytes": 0, "cache_keys": 0}),
        }
        frames.append(_frame(rows[variant.name], loaded, config, run_id, variant, workload, params))
    return pl.concat(frames, how="vertical")


SUMMARY_COLUMNS = ("variant", "family", "ttft_s", "throughput_tps", "task_accuracy", "hit_rate", "cache_errors")


def summary_extras(frame: pl.DataFrame) -> dict:
    """Per variant: hit rate and count, E2E percentiles, and the latency the cache saved: the mean E2E of the
    baseline minus the variant's over the same request stream, and the median E2E of a hit (the cache lookup)."""
    from workbench import stats

    speed = frame.filter(kind="speed")
    out: dict[str, dict[str, Any]] = {}
    for (variant,), group in speed.group_by("variant"):
        hits = group.filter(pl.col("cache_hit").fill_null(False))
        figures: dict[str, Any] = {"hit_rate": group["cache_hit"].drop_nulls().mean(), "cache_hits": hits.height}
        figures.update({f"e2e_s_p{p}": stats.percentile(group["e2e_s"].to_list(), p) for p in stats.PERCENTILES})
        figures["hit_e2e_s_p50"] = stats.percentile(hits["e2e_s"].to_list(), 50)
        figures["e2e_s_mean"] = stats.describe(group["e2e_s"].to_list())["mean"]
        errors = group["error"].drop_nulls()
        figures["cache_errors"] = errors.len()
        figures["cache_error"] = errors[0] if errors.len() else None
        out[variant] = figures
    baseline = out.get(NO_CACHE.name, {}).get("e2e_s_mean")
    for figures in out.values():
        figures["e2e_saved_s_mean"] = None if baseline is None else baseline - figures["e2e_s_mean"]
    return out


def run_warnings(frame: pl.DataFrame) -> list[str]:
    """One line when the cache failed during the run (each failure was a miss, its row says why)."""
    errors = frame.filter(kind="speed")["error"].drop_nulls()
    if errors.is_empty():
        return []
    return [f"{errors.len()} requests met a cache error and were served as misses (first: {errors[0]})"]
