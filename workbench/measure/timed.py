"""Speed measurement: the one timed generation loop, and token timelines turned into metrics.

Definitions (docs/metrics.md): request sent at t0, token i at t_i,
TTFT = t_1 - t0, ITL = t_{i+1} - t_i, TPOT = (t_N - t_1)/(N - 1), E2E = t_N - t0,
prefill tok/s = P / TTFT, decode tok/s = (N - 1)/(t_N - t_1).

Generation goes through mlx-lm itself (`stream_generate` for one request, `BatchGenerator`,
the engine of `batch_generate`, for a batch); the clock is read when mlx-lm hands a token
over, which is after MLX has evaluated it. `stream_timed` is the only place a clock is
read around `stream_generate`; every timed experiment calls it (quality's greedy decoding
is untimed and calls mlx-lm directly). mlx-lm's own
`prompt_tps`/`generation_tps` are kept next to ours in every row so the two can be
cross-checked.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from workbench import stats

if TYPE_CHECKING:
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper


def request_metrics(
    t0: float, token_times: list[float], prompt_tokens: int, *, generated_tokens: int | None = None
) -> dict[str, Any]:
    """Metrics of one request from its send time and its tokens' arrival times.

    A served stream may carry several tokens in one chunk: then `token_times` are the chunks' arrival times and
    `generated_tokens` the server's count; ITL stays the gaps between chunks, TPOT and decode tok/s use the count.
    """
    n = len(token_times) if generated_tokens is None else generated_tokens
    if not token_times or n == 0:
        raise ValueError("a request with no generated token has no timeline")
    ttft = token_times[0] - t0
    decode_span = token_times[-1] - token_times[0]
    return {
        "prompt_tokens": prompt_tokens,
        "generated_tokens": n,
        "ttft_s": ttft,
        "itl_s": [b - a for a, b in zip(token_times, token_times[1:])],
        "tpot_s": decode_span / (n - 1) if n > 1 else math.nan,
        "e2e_s": token_times[-1] - t0,
        "prefill_tps": prompt_tokens / ttft if ttft > 0 else math.nan,
        "decode_tps": (n - 1) / decode_span if n > 1 and decode_span > 0 else math.nan,
    }


@dataclass
class Timeline:
    """One request as mlx-lm handed it over: send time, token arrival times, tokens, draft flags."""

    t0: float
    prompt_tokens: int
    token_times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    from_draft: list[bool] | None = None
    mlx_prompt_tps: float = math.nan
    mlx_generation_tps: float = math.nan

    def metrics(self) -> dict[str, Any]:
        return request_metrics(self.t0, self.token_times, self.prompt_tokens)


@dataclass
class RequestRecord:
    """One timed request of one trial: the row `results.to_frame` stores for `kind="speed"`."""

    round: int
    trial: int
    request_index: int
    batch_index: int
    batch_size: int
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float
    itl_s: list[float]
    tpot_s: float
    e2e_s: float
    prefill_tps: float
    decode_tps: float
    window_s: float
    peak_mem_bytes: int
    rss_bytes: int
    mlx_prompt_tps: float
    mlx_generation_tps: float
    output_tokens: list[int]
    from_draft: list[bool] | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def eos_disabled(tokenizer: TokenizerWrapper, enabled: bool = True) -> Iterator[None]:
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


def stream_timed(
    model: nn.Module, tokenizer: TokenizerWrapper, prompt: list[int], max_tokens: int, **kwargs: Any
) -> Timeline:
    """Generate one request with `mlx_lm.stream_generate`, reading the clock as each token arrives."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    timeline = Timeline(t0=time.perf_counter(), prompt_tokens=len(prompt))
    drafted, response = [], None
    for response in stream_generate(model, tokenizer, mx.array(prompt), max_tokens=max_tokens, **kwargs):
        timeline.token_times.append(time.perf_counter())
        timeline.tokens.append(response.token)
        timeline.text += response.text
        drafted.append(bool(response.from_draft))
    if response is not None:
        timeline.mlx_prompt_tps, timeline.mlx_generation_tps = response.prompt_tps, response.generation_tps
    if "draft_model" in kwargs:
        timeline.from_draft = drafted
    return timeline


def _batch(
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    prompts: list[list[int]],
    gen_tokens: list[int],
    stop: bool,
    **kwargs: Any,
) -> list[Timeline]:
    from mlx_lm.generate import BatchGenerator

    stop_tokens = [[t] for t in tokenizer.eos_token_ids] if stop else None
    gen: Any = BatchGenerator(  # Any: mlx-lm leaves BatchGenerator's methods unannotated
        model,
        stop_tokens=stop_tokens,
        completion_batch_size=len(prompts),
        prefill_batch_size=len(prompts),
        **kwargs,
    )
    try:
        t0 = time.perf_counter()
        uids = gen.insert(prompts, list(gen_tokens))
        timelines = {uid: Timeline(t0=t0, prompt_tokens=len(p)) for uid, p in zip(uids, prompts)}
        with gen.stats() as batch_stats:
            while responses := gen.next_generated():
                now = time.perf_counter()
                for r in responses:
                    if r.finish_reason != "stop":
                        timelines[r.uid].token_times.append(now)
                        timelines[r.uid].tokens.append(r.token)
    finally:
        gen.close()
    for timeline in timelines.values():
        timeline.mlx_prompt_tps, timeline.mlx_generation_tps = batch_stats.prompt_tps, batch_stats.generation_tps
    return [timelines[uid] for uid in uids]


@dataclass(frozen=True)
class Schedule:
    """How `measure_generation` sends its prompts: `trials` timed passes after `warmup` discarded ones,
    `batch_size` requests at a time, EOS suppressed (`ignore_eos`), rows filed under round `round_index`."""

    trials: int = 3
    warmup: int = 1
    batch_size: int = 1
    ignore_eos: bool = True
    round_index: int = 0


def measure_generation(
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    prompts: list[list[int]],
    schedule: Schedule | None = None,
    *,
    gen_tokens: int | list[int],
    **generate_kwargs: Any,
) -> list[RequestRecord]:
    """One record per request per trial. Warm-up passes run first and are discarded.

    Requests are sent `batch_size` at a time; within a trial they run back to back, so the
    trial's window is the sum of its batches' wall times. Peak memory is reset per trial.
    `gen_tokens` is one limit for every request or a list, one per prompt (a workload's `max_tokens`).
    """
    import mlx.core as mx
    import psutil

    schedule = schedule or Schedule()
    trials, warmup, batch_size = schedule.trials, schedule.warmup, schedule.batch_size
    ignore_eos, round_index = schedule.ignore_eos, schedule.round_index

    limits = [gen_tokens] * len(prompts) if isinstance(gen_tokens, int) else [int(n) for n in gen_tokens]
    if len(limits) != len(prompts) or min(limits, default=1) < 1 or trials < 1 or batch_size < 1 or warmup < 0:
        raise ValueError("gen_tokens (one per prompt), trials and batch_size must be >= 1 and warmup >= 0")
    starts = range(0, len(prompts), batch_size)
    batches = [(prompts[i : i + batch_size], limits[i : i + batch_size]) for i in starts]

    def run_batch(batch: tuple[list[list[int]], list[int]]) -> list[Timeline]:
        batch_prompts, batch_limits = batch
        if batch_size == 1:
            return [stream_timed(model, tokenizer, batch_prompts[0], batch_limits[0], **generate_kwargs)]
        return _batch(model, tokenizer, batch_prompts, batch_limits, stop=not ignore_eos, **generate_kwargs)

    records = []
    with eos_disabled(tokenizer, ignore_eos):
        for _ in range(warmup):
            run_batch(batches[0])
        for trial in range(trials):
            mx.synchronize()
            mx.reset_peak_memory()
            timed: list[tuple[int, int, Timeline]] = []
            start = time.perf_counter()
            for b, batch in enumerate(batches):
                timed.extend((b, len(batch[0]), timeline) for timeline in run_batch(batch))
            window = time.perf_counter() - start
            trial_facts: dict[str, Any] = {"round": round_index, "trial": trial, "window_s": window}
            trial_facts |= {"peak_mem_bytes": mx.get_peak_memory(), "rss_bytes": psutil.Process().memory_info().rss}
            for i, (b, size, timeline) in enumerate(timed):
                mlx_figures: dict[str, Any] = {
                    "mlx_prompt_tps": timeline.mlx_prompt_tps,
                    "mlx_generation_tps": timeline.mlx_generation_tps,
                }
                records.append(
                    RequestRecord(
                        **trial_facts,
                        **timeline.metrics(),
                        **mlx_figures,
                        request_index=i,
                        batch_index=b,
                        batch_size=size,
                        output_tokens=timeline.tokens,
                        from_draft=timeline.from_draft,
                    )
                )
    return records


def run_summary(records: list[RequestRecord]) -> dict[str, Any]:
    """`workbench bench`'s summary: the one speed summary (`measure.summary.speed_summary`) of the records, each
    per-request figure's distribution (`<metric>_mean`, `_p50`, ...), and the per-trial throughput interval."""
    if not records:
        return {}
    import polars as pl

    from workbench.measure.summary import speed_summary

    rows = [{k: v for k, v in r.to_row().items() if k not in ("output_tokens", "from_draft")} for r in records]
    frame = pl.DataFrame(rows, strict=False)
    summary: dict[str, Any] = {}
    for key in ("ttft_s", "tpot_s", "e2e_s", "prefill_tps", "decode_tps"):
        summary.update({f"{key}_{name}": value for name, value in stats.describe(frame[key]).items()})
    summary.update({f"itl_s_{name}": value for name, value in stats.describe(frame["itl_s"].explode()).items()})
    summary.update(speed_summary(frame, by=[]).row(0, named=True))
    per_trial = speed_summary(frame, by=["round", "trial"])["throughput_tps"].to_list()
    summary["throughput_tps_ci"] = list(stats.mean_interval(per_trial))
    summary["rss_bytes"] = max(r.rss_bytes for r in records)
    return summary
