"""Load profiles against a served endpoint: what is sent when, and the saturation search over levels.

- `synchronous`: one request at a time;
- `concurrency` C: a closed loop, C requests in flight, the next sent as one finishes;
- `rate` R: an open loop, Poisson arrivals at R req/s from a seeded generator (each row keeps its scheduled
  `arrival_s` next to its actual `sent_s`, both offsets from the level's start);
- `throughput`: everything at once (concurrency = the number of requests);
- `trace`: an open loop at given send offsets (`arrivals`: a replayed trace's timestamps; value = its speed);
- `search_saturation`: rates or concurrencies in increasing order, stopping at the first level that fails its
  SLOs (`slo.SLO`); a level whose requests in flight and TTFT grow without bound is stopped early and marked
  `saturated` (`slo.OverSaturation`): sending stops, requests in flight are cancelled and kept as failed rows.

Every request sent is a row (`kind="speed"`, with `profile`, `level`, `trial`, the level's `window_s` and
`saturated`); requests a stopped level never sent are not rows, nor are fidelity probes (`probes.Probe`: a
prompt that sends itself, counted apart from the measured load). Summaries come from the rows (`slo.summarise`).
Send lag: every row has the offset it was due at (`arrival_s`: its scheduled arrival in an open loop; in a closed
loop the moment its slot freed, i.e. the previous reply on that slot ended) and the offset it was sent at (`sent_s`).

    levels = [Level("concurrency", c) for c in (1, 2, 4)]
    results = run_levels(Target(url=url, model=name), prompts, levels, LoadOptions(max_tokens=64))
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.endpoint.client import EndpointClient, RequestOutcome, Target, run_async
from workbench.endpoint.slo import SLO, OverSaturation, SaturationTracker, summarise
from workbench.workloads.arrivals import poisson_arrivals

PROFILES = ("synchronous", "concurrency", "rate", "throughput", "trace")
CANCELLED = "cancelled: level stopped as over-saturated"


@dataclass(frozen=True)
class Level:
    """One load level: its profile and value (concurrency or rate; 1 for synchronous; 0 for throughput)."""

    profile: str
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown load profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.profile in ("concurrency", "rate", "trace") and not self.value > 0:
            raise ValueError(f"a {self.profile} level needs a value > 0, got {self.value}")

    def effective(self, requests: int) -> float:
        """The level's value as it loads the server: 1 in flight (synchronous), all of them (throughput), else the
        concurrency or rate it was given."""
        return {"synchronous": 1.0, "throughput": float(requests)}.get(self.profile, float(self.value))


@dataclass
class LevelResult:
    level: Level
    rows: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[RequestOutcome] = field(default_factory=list)
    saturated: bool = False
    unsent: int = 0

    def summary(self, slo: SLO | None = None, *, gen_tokens: int | None = None) -> dict[str, Any]:
        return {**summarise(self.rows, slo, gen_tokens=gen_tokens), "unsent": self.unsent}


@dataclass(frozen=True)
class LoadOptions:
    """How the levels of one run are sent: each request's output limit (`max_tokens`, one for all or one per
    prompt), `trials` per level, `warmup` unrecorded requests first on `warmup_prompts` (default: the measured
    prompts), the Poisson seed, the over-saturation stop of rate levels, and the send offsets of a `trace` level."""

    max_tokens: int | list[int]
    trials: int = 1
    warmup: int = 0
    warmup_prompts: list[Any] | None = None
    seed: int = 0
    oversat: OverSaturation | None = None
    arrivals: list[float] | None = None


async def run_level_async(
    client: EndpointClient, prompts: list[Any], level: Level, options: LoadOptions, *, trial: int = 0
) -> LevelResult:
    """Send every prompt once under `level` (a `trace` level at `options.arrivals`); one row per request sent.
    Trial `t` draws its Poisson arrivals with seed `options.seed + t`."""
    max_tokens, arrivals = options.max_tokens, options.arrivals
    tracker = SaturationTracker(options.oversat if level.profile == "rate" else None)
    outcomes = [RequestOutcome(index=i) for i in range(len(prompts))]
    stop = asyncio.Event()
    tasks: list[asyncio.Future[None]] = []  # workers or requests; cancelled one by one when the level is stopped
    state = {"in_flight": 0}
    start = time.perf_counter()

    async def one(i: int) -> None:
        outcome = outcomes[i]
        outcome.sent_s = time.perf_counter() - start
        state["in_flight"] += 1
        tracker.started.append((outcome.sent_s, state["in_flight"]))
        try:
            limit = max_tokens if isinstance(max_tokens, int) else max_tokens[i]
            send_with = getattr(prompts[i], "send_with", None)  # a probe (`probes.Probe`) sends itself
            if send_with is not None:
                await send_with(client, outcome)
            else:
                await client.send(prompts[i], limit, outcome=outcome)
        finally:
            state["in_flight"] -= 1
        if outcome.chunk_times:
            tracker.ttfts.append((outcome.sent_s, outcome.chunk_times[0] - outcome.t0))
        if tracker.due(time.perf_counter() - start) and tracker.saturated():
            stop.set()

    async def closed_loop(width: int) -> None:
        pending = iter(range(len(prompts)))

        async def worker() -> None:
            free_s = 0.0
            for i in pending:
                if stop.is_set():
                    return
                outcomes[i].scheduled_s = free_s
                await one(i)
                free_s = outcomes[i].end - start

        tasks.extend(asyncio.ensure_future(worker()) for _ in range(width))
        await asyncio.gather(*tasks)

    async def open_loop(offsets: list[float]) -> None:
        for i, due in enumerate(offsets):
            outcomes[i].scheduled_s = due
            delay = due - (time.perf_counter() - start)
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            if stop.is_set():
                break
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)

    if level.profile == "trace":
        body = open_loop(list(arrivals or []))
    elif level.profile == "rate":
        body = open_loop(poisson_arrivals(len(prompts), level.value, options.seed + trial))
    else:
        body = closed_loop(max(1, int(level.effective(len(prompts)))))
    runner = asyncio.ensure_future(body)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not runner.done():
        for task in (runner, *tasks):
            task.cancel()
        await asyncio.gather(runner, *tasks, return_exceptions=True)
    stopper.cancel()
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        # a fault in the load loop itself, never a failed request (those are rows): the requests that finished
        # go with it as `rows_so_far`, for the caller to keep (`store.rescue_rows`) before it surfaces
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        fault = runner.exception()
        assert fault is not None  # checked above; the type checker cannot carry it over a second call
        finished = [o for o in outcomes if o.sent_s is not None and not math.isnan(o.end)]
        keep_rows(fault, [{**o.to_row(), "kind": "speed", "profile": level.profile, "trial": trial} for o in finished])
        raise fault
    sent = [o for o in outcomes if o.sent_s is not None]
    for outcome in sent:
        if math.isnan(outcome.end):  # cancelled mid-stream: still a request the server received
            outcome.end, outcome.error, outcome.ok = time.perf_counter(), CANCELLED, False
    window = max((o.end for o in sent), default=start) - start
    facts = {"kind": "speed", "profile": level.profile, "level": level.effective(len(prompts)), "trial": trial}
    facts["round"] = 0
    facts |= {"window_s": window, "saturated": stop.is_set()}
    rows = [{**o.to_row(), **facts} for o in sent if getattr(prompts[o.index], "measured", True)]  # probes apart
    return LevelResult(level, rows, sent, saturated=stop.is_set(), unsent=len(prompts) - len(sent))


async def warm_up(client: EndpointClient, prompts: list[Any], *, max_tokens: int | list[int], count: int) -> None:
    for i in range(count):
        limit = max_tokens if isinstance(max_tokens, int) else max_tokens[i % len(max_tokens)]
        await client.send(prompts[i % len(prompts)], limit)


def run_levels(
    target: Target,
    prompts: list[Any],
    levels: list[Level],
    options: LoadOptions,
    *,
    keep_going: Callable[[LevelResult], bool] | None = None,
) -> list[LevelResult]:
    """Run `levels` in order, `options.trials` times each, on one connection pool; `options.warmup` unrecorded
    requests first, on `options.warmup_prompts` (default: the measured prompts; then a server with a prompt cache,
    as mlx_lm.server, serves the first measured request's prompt from the cache the warm-up left: give prompts of
    their own). `keep_going(result) -> bool`, when given, is asked after each level whether to run the next."""

    out: list[LevelResult] = []

    async def run() -> list[LevelResult]:
        async with EndpointClient(target) as client:
            warm = options.warmup_prompts or prompts
            await warm_up(client, warm, max_tokens=options.max_tokens, count=options.warmup)
            for level in levels:
                for trial in range(options.trials):
                    result = await run_level_async(client, prompts, level, options, trial=trial)
                    if trial and out and out[-1].level == level:
                        out[-1].rows += result.rows
                        out[-1].outcomes += result.outcomes
                        out[-1].saturated |= result.saturated
                        out[-1].unsent += result.unsent
                    else:
                        out.append(result)
                if keep_going is not None and not keep_going(out[-1]):
                    break
        return out

    try:
        return run_async(run())
    except BaseException as exc:
        keep_rows(exc, [row for result in out for row in result.rows])
        raise


def keep_rows(exc: BaseException, rows: list[dict[str, Any]]) -> None:
    """Attach rows measured before a fault to it (`exc.rows_so_far`, earliest first), so that whoever holds the
    run's other rows can keep them all (`store.rescue_rows`) before the fault surfaces."""
    # an ad-hoc attribute on any exception (read back with getattr), so no exception class declares it
    exc.rows_so_far = [*rows, *getattr(exc, "rows_so_far", [])]  # type: ignore[attr-defined]


@dataclass
class SaturationSearch:
    """The levels run, their summaries, the highest level that passed (None: none did) and the first that failed."""

    results: list[LevelResult]
    summaries: list[dict[str, Any]]
    best: float | None
    failed_at: float | None


def search_saturation(
    target: Target, prompts: list[Any], options: LoadOptions, *, profile: str, values: list[float], slo: SLO
) -> SaturationSearch:
    """The highest rate or concurrency in `values` whose goodput meets `slo`: levels run in increasing order and
    the search stops at the first that fails (over-saturated levels fail; without `options.oversat`, the default
    `OverSaturation` stops them)."""
    if profile not in ("rate", "concurrency"):
        raise ValueError(f"a saturation search runs over 'rate' or 'concurrency', not {profile!r}")
    levels = [Level(profile, v) for v in sorted(values)]
    options = replace(options, oversat=options.oversat or OverSaturation())
    results = run_levels(target, prompts, levels, options, keep_going=lambda result: result.summary(slo)["slo_pass"])
    fixed = options.max_tokens if isinstance(options.max_tokens, int) else None
    summaries = [r.summary(slo, gen_tokens=fixed) for r in results]
    passed = [s["level"] for s in summaries if s["slo_pass"]]
    failed = [s["level"] for s in summaries if not s["slo_pass"]]
    return SaturationSearch(results, summaries, max(passed) if passed else None, failed[0] if failed else None)
