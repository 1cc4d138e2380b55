"""Speed measurement: per-request token timelines turned into TTFT, ITL, TPOT, E2E, tok/s.

Definitions (docs/metrics.md, ../shared/DESIGN.md): request sent at t0, token i at t_i,
TTFT = t_1 - t0, ITL = t_{i+1} - t_i, TPOT = (t_N - t_1)/(N - 1), E2E = t_N - t0,
prefill tok/s = P / TTFT, decode tok/s = (N - 1)/(t_N - t_1).

Generation goes through mlx-lm itself (`stream_generate` for batch 1, `BatchGenerator`,
the engine of `batch_generate`, above that); the clock is read when mlx-lm hands a token
over, which is after MLX has evaluated it. mlx-lm's own `prompt_tps`/`generation_tps`
are kept next to ours in every row so the two can be cross-checked.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

PERCENTILES = (50, 90, 99)


def request_metrics(t0: float, token_times: list[float], prompt_tokens: int) -> dict:
    """Metrics of one request from its send time and its tokens' arrival times."""
    n = len(token_times)
    if n == 0:
        raise ValueError("a request with no generated token has no timeline")
    ttft = token_times[0] - t0
    itl = [b - a for a, b in zip(token_times, token_times[1:])]
    decode_span = token_times[-1] - token_times[0]
    return {
        "prompt_tokens": prompt_tokens,
        "generated_tokens": n,
        "ttft_s": ttft,
        "itl_s": itl,
        "tpot_s": decode_span / (n - 1) if n > 1 else math.nan,
        "e2e_s": token_times[-1] - t0,
        "prefill_tps": prompt_tokens / ttft if ttft > 0 else math.nan,
        "decode_tps": (n - 1) / decode_span if n > 1 and decode_span > 0 else math.nan,
    }


def summarise(values) -> dict:
    """mean, p50, p90, p99 of finite values (NaN when there are none)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"mean": math.nan, **{f"p{p}": math.nan for p in PERCENTILES}}
    return {"mean": float(arr.mean()), **{f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}}


def confidence_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval for the mean (t-quantile for small samples)."""
    from statistics import NormalDist

    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if arr.size < 2:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * arr.std(ddof=1) / math.sqrt(arr.size)
    return (float(arr.mean() - half), float(arr.mean() + half))


@contextlib.contextmanager
def eos_disabled(tokenizer, enabled: bool = True):
    """Generate exactly the requested number of tokens (as `mlx_lm.benchmark` does)."""
    if not enabled:
        yield
        return
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    try:
        yield
    finally:
        tokenizer.eos_token_ids = saved


def _stream_one(model, tokenizer, prompt: list[int], gen_tokens: int, **kwargs) -> tuple[dict, list[int]]:
    import mlx.core as mx
    from mlx_lm import stream_generate

    times, tokens, drafted = [], [], []
    response = None
    t0 = time.perf_counter()
    for response in stream_generate(model, tokenizer, mx.array(prompt), max_tokens=gen_tokens, **kwargs):
        times.append(time.perf_counter())
        tokens.append(response.token)
        drafted.append(response.from_draft)
    if "draft_model" not in kwargs:
        drafted = []
    row = request_metrics(t0, times, len(prompt))
    row.update(
        mlx_prompt_tps=response.prompt_tps,
        mlx_generation_tps=response.generation_tps,
        output_tokens=tokens,
        from_draft=[bool(r) for r in drafted] if drafted else None,
    )
    return row, tokens


def _batch(model, tokenizer, prompts: list[list[int]], gen_tokens: int, stop: bool, **kwargs) -> list[dict]:
    from mlx_lm.generate import BatchGenerator

    stop_tokens = [[t] for t in tokenizer.eos_token_ids] if stop else None
    gen = BatchGenerator(
        model, stop_tokens=stop_tokens, completion_batch_size=len(prompts), prefill_batch_size=len(prompts), **kwargs
    )
    try:
        t0 = time.perf_counter()
        uids = gen.insert(prompts, [gen_tokens] * len(prompts))
        times = {uid: [] for uid in uids}
        tokens = {uid: [] for uid in uids}
        with gen.stats() as stats:
            while responses := gen.next_generated():
                now = time.perf_counter()
                for r in responses:
                    if r.finish_reason != "stop":
                        times[r.uid].append(now)
                        tokens[r.uid].append(r.token)
    finally:
        gen.close()
    rows = []
    for uid, prompt in zip(uids, prompts):
        row = request_metrics(t0, times[uid], len(prompt))
        row.update(mlx_prompt_tps=stats.prompt_tps, mlx_generation_tps=stats.generation_tps, output_tokens=tokens[uid])
        rows.append(row)
    return rows


def measure_generation(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    gen_tokens: int,
    trials: int = 3,
    warmup: int = 1,
    batch_size: int = 1,
    ignore_eos: bool = True,
    **generate_kwargs,
) -> list[dict]:
    """One row per request per trial. Warm-up passes are run first and discarded.

    Requests are sent `batch_size` at a time; within a trial they run back to back, so
    the trial's window is the sum of its batches' wall times.
    """
    import mlx.core as mx
    import psutil

    if gen_tokens < 1 or trials < 1 or batch_size < 1 or warmup < 0:
        raise ValueError("gen_tokens, trials and batch_size must be >= 1 and warmup >= 0")
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]

    def run_batch(batch):
        if batch_size == 1:
            return [_stream_one(model, tokenizer, batch[0], gen_tokens, **generate_kwargs)[0]]
        return _batch(model, tokenizer, batch, gen_tokens, stop=not ignore_eos, **generate_kwargs)

    rows = []
    with eos_disabled(tokenizer, ignore_eos):
        for _ in range(warmup):
            run_batch(batches[0])
        for trial in range(trials):
            mx.synchronize()
            mx.reset_peak_memory()
            trial_rows = []
            start = time.perf_counter()
            for b, batch in enumerate(batches):
                for r in run_batch(batch):
                    r.update(trial=trial, batch_index=b, batch_size=len(batch))
                    trial_rows.append(r)
            window = time.perf_counter() - start
            peak, rss = mx.get_peak_memory(), psutil.Process().memory_info().rss
            for i, r in enumerate(trial_rows):
                r.update(request_index=i, window_s=window, peak_mem_bytes=peak, rss_bytes=rss)
            rows.extend(trial_rows)
    return rows


def run_summary(rows: list[dict]) -> dict:
    """Medians over trials of the per-request figures, plus throughput over the measured windows."""
    if not rows:
        return {}
    summary = {}
    for key in ("ttft_s", "tpot_s", "e2e_s", "prefill_tps", "decode_tps"):
        stats = summarise(r[key] for r in rows)
        summary[key] = stats["p50"]
        summary.update({f"{key}_{name}": value for name, value in stats.items()})
    itl = [gap for r in rows for gap in r["itl_s"]]
    summary.update({f"itl_s_{name}": value for name, value in summarise(itl).items()})
    windows = {r["trial"]: r["window_s"] for r in rows}
    total_window = sum(windows.values())
    summary["throughput_tps"] = sum(r["generated_tokens"] for r in rows) / total_window
    summary["throughput_rps"] = len(rows) / total_window
    summary["peak_mem_bytes"] = max(r["peak_mem_bytes"] for r in rows)
    summary["rss_bytes"] = max(r["rss_bytes"] for r in rows)
    summary["trials"] = len(windows)
    summary["requests"] = len(rows)
    return summary
