"""A continuous-batching scheduler over mlx-lm's `BatchGenerator`, fed by an arrival process.

Requests arrive (Poisson at a rate, or a closed loop at fixed concurrency), wait in a
queue ordered by (priority, arrival), and are admitted into the running batch whenever it
has room; finished requests leave at once. The batch limit adapts: it doubles after a
window of decode steps without memory pressure and halves when MLX's active memory passes
`memory_limit_bytes`. TTFT is measured from arrival, so it includes queueing.
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.measure.timed import request_metrics

if TYPE_CHECKING:
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper


@dataclass(frozen=True)
class Request:
    index: int
    prompt: list[int]
    arrival_s: float  # offset from the start of the run (open loop); ignored in closed loop
    priority: int = 1  # 0 = urgent


def assign_priorities(count: int, urgent_fraction: float, seed: int) -> list[int]:
    rng = random.Random(f"priority-{seed}")
    return [0 if rng.random() < urgent_fraction else 1 for _ in range(count)]


@dataclass(frozen=True)
class Scheduler:
    """How requests are served: `gen_tokens` each; a closed loop at `concurrency` (None: by arrival time); the batch
    limit starts at `initial_batch` (at most `max_batch`) and, when `adaptive`, doubles after `grow_every_steps`
    decode steps without memory pressure and halves when active memory passes `memory_limit_bytes`."""

    gen_tokens: int
    concurrency: int | None = None
    initial_batch: int = 4
    max_batch: int = 32
    adaptive: bool = True
    memory_limit_bytes: int | None = None
    grow_every_steps: int = 8


def run_continuous(
    model: nn.Module, tokenizer: TokenizerWrapper, requests: list[Request], scheduler: Scheduler
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Serve `requests` under `scheduler`; returns one row per request and scheduler facts (final limit, resizes)."""
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    gen: Any = BatchGenerator(  # Any: mlx-lm leaves BatchGenerator's methods unannotated
        model, stop_tokens=None, completion_batch_size=scheduler.max_batch, prefill_batch_size=scheduler.max_batch
    )
    closed_loop = scheduler.concurrency is not None
    pending = sorted(requests, key=lambda r: r.arrival_s)
    queue: list[tuple[int, float, int, Request]] = []
    active: dict[int, Request] = {}
    timelines: dict[int, list[float]] = {}
    limit = min(scheduler.initial_batch, scheduler.max_batch)
    resizes, steps_since_resize, max_active = [], 0, 0
    start = time.perf_counter()
    sent = {}
    try:
        while pending or queue or active:
            now = time.perf_counter() - start
            if scheduler.concurrency is not None:
                while pending and len(active) + len(queue) < scheduler.concurrency:
                    r = pending.pop(0)
                    sent[r.index] = now
                    heapq.heappush(queue, (r.priority, now, r.index, r))
            else:
                while pending and pending[0].arrival_s <= now:
                    r = pending.pop(0)
                    sent[r.index] = r.arrival_s
                    heapq.heappush(queue, (r.priority, r.arrival_s, r.index, r))
            admit: list[Request] = []
            while queue and len(active) + len(admit) < limit:
                admit.append(heapq.heappop(queue)[3])
            if admit:
                uids = gen.insert([r.prompt for r in admit], [scheduler.gen_tokens] * len(admit))
                for uid, r in zip(uids, admit):
                    active[uid] = r
                    timelines[r.index] = []
            if not active:
                if pending and not closed_loop:
                    time.sleep(max(0.0, min(pending[0].arrival_s - now, 0.01)))
                continue
            max_active = max(max_active, len(active))
            responses = gen.next_generated()
            t = time.perf_counter() - start
            for resp in responses:
                served = active.get(resp.uid)
                if served is None:
                    continue
                if resp.finish_reason != "stop":
                    timelines[served.index].append(t)
                if resp.finish_reason is not None:
                    del active[resp.uid]
            steps_since_resize += 1
            if scheduler.adaptive:
                over = (
                    scheduler.memory_limit_bytes is not None and mx.get_active_memory() > scheduler.memory_limit_bytes
                )
                if over and limit > 1:
                    limit = max(1, limit // 2)
                    resizes.append((round(t, 4), limit))
                    steps_since_resize = 0
                elif (
                    not over
                    and steps_since_resize >= scheduler.grow_every_steps
                    and limit < scheduler.max_batch
                    and len(active) >= limit
                ):
                    limit = min(scheduler.max_batch, limit * 2)
                    resizes.append((round(t, 4), limit))
                    steps_since_resize = 0
    finally:
        gen.close()
    wall = time.perf_counter() - start
    rows = []
    for r in requests:
        row = request_metrics(sent[r.index], timelines[r.index], len(r.prompt))
        row.update(request_index=r.index, priority=r.priority, arrival_s=sent[r.index])
        rows.append(row)
    facts = {"wall_s": wall, "final_batch_limit": limit, "resizes": resizes, "max_active": max_active}
    return rows, facts
