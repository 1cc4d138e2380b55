"""Interleaved rounds until the intervals are narrow enough: the one round loop every experiment runs.

A round measures every arm once, adjacent in time, the order rotating from round to round. With `rounds: N`
a run makes exactly N rounds. With `precision: p` it keeps adding rounds until the 95% interval of every
variant's paired change on the headline metrics (`results.rounds.HEADLINE`) has a half-width <= p relative to
the measured ratio (`PairedChange.precision`), or `max_rounds` or `time_budget_s` is reached (the budget never
stops a run before `MIN_ROUNDS`, the first round count with an interval worth printing). It stops on the
interval's *width*, never on significance: stopping once a change looks significant would make every run a
chance to stop on a lucky streak and inflate false positives; the width does not depend on where the change
lies, so the interval keeps its coverage (docs/metrics.md).

Hygiene, recorded rather than hidden: the garbage collector is collected then disabled while a round is
timed (as pyperf does), each row carries its round's 1-minute load (`round_load`) and wall time
(`round_wall_s`), a baseline round beyond 5 scaled MADs is flagged (`round_outlier`) but kept, and the
optional `cpu_affinity` pins the process (Linux `os.sched_setaffinity`; a no-op with a note elsewhere).

    frames, log = rounds.run_rounds(config, measure_round)   # measure_round(round_index) -> {variant: [rows]}
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import polars as pl

from workbench import runtime, stats
from workbench.results import rounds as round_stats

MIN_ROUNDS = 3  # a precision run's first check: below 3 rounds a t interval has 1 degree of freedom
STOP_PRECISION, STOP_MAX, STOP_BUDGET, STOP_EXACT = "precision reached", "max_rounds", "time budget", "exact count"
ROUND_KEYS = ("round", "trial", "batch_index", "generated_tokens", "window_s", "ttft_s", "e2e_s", "decode_tps")


@dataclass
class RoundLog:
    """How a run's rounds went: how many, why they stopped, and the half-width each variant reached."""

    rounds: int = 0
    stopped: str = STOP_EXACT
    precision: float | None = None
    half_width: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    outliers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return stats.json_safe(asdict(self))


def settings_of(config) -> dict:
    """The round settings of a config (what env.json records)."""
    return {
        "rounds": config.rounds,
        "precision": config.precision,
        "max_rounds": config.max_rounds,
        "time_budget_s": config.time_budget_s,
        "cpu_affinity": config.cpu_affinity,
        "gc_disabled_in_rounds": True,
    }


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def thread_settings() -> dict:
    """The thread-count variables BLAS reads, and the CPUs this process may run on (env.json records them)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"threads": {k: os.environ.get(k) for k in THREAD_VARIABLES}, "allowed_cpus": cpus}


def apply_affinity(cpus: list[int] | None) -> str | None:
    """Pin this process to `cpus`; returns a note when the platform cannot (macOS has no sched_setaffinity)."""
    if not cpus:
        return None
    if not hasattr(os, "sched_setaffinity"):
        return f"cpu_affinity {cpus} ignored: this platform ({sys.platform}) has no os.sched_setaffinity"
    os.sched_setaffinity(0, set(cpus))
    return None


@contextlib.contextmanager
def quiet_gc():
    """Collect the young generations, then keep the garbage collector off while a round is timed; restore it
    afterwards. (A full collection costs ~60 ms in a process holding a model, too much before a 0.3 s round;
    the old generation is collected automatically between rounds once the collector is back on.)"""
    was_enabled = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def current_samples(rows: dict[str, list[dict]]) -> pl.DataFrame:
    """The per-round values of what has been measured so far (for the stop rule)."""
    records = [
        {"run_id": "current", "variant": name, "kind": "speed", **{k: r.get(k) for k in ROUND_KEYS}}
        for name, arm_rows in rows.items()
        for r in arm_rows
    ]
    if not records:
        return pl.DataFrame()
    return round_stats.round_samples(pl.DataFrame(records, infer_schema_length=None))


def _eta_s(samples: pl.DataFrame, precision: float, done: int, round_s: float) -> float:
    needed = done
    for metric in round_stats.HEADLINE:
        for change in round_stats.paired(samples, metric).values():
            needed = max(needed, stats.rounds_for(change.sd_log, precision))
    return max(0, needed - done) * round_s


def _progress_line(bar, desc: str, done: int, limit: int, width: str | None) -> None:
    """Without a terminal (a pipe, a papermill log) the bar is off: a step line instead, for the first round, the
    last possible one and every tenth of the way (a 200-round precision run prints ~20 lines, not 200)."""
    if not bar.disable:
        return
    if done == 1 or done == limit or done % max(1, limit // 10) == 0:
        from workbench import terminal

        name = desc.removesuffix(" rounds")
        total = f"{limit}" if width is None else f"up to {limit}"
        terminal.step(f"{name}: speed round {done}/{total}" + (f" ({width})" if width else ""))


def run_rounds(
    config, measure_round: Callable[[int], dict[str, list[dict]]], *, desc: str = "rounds"
) -> tuple[dict[str, list[dict]], RoundLog]:
    """Call `measure_round(i)` for i = 0, 1, ... (each returns the rows per variant name, the baseline named
    "baseline") until the config's rule stops; every row gains `round_load`, `round_wall_s`, `round_outlier`,
    `rounds_stopped`, `min_effect` (the practical threshold its verdicts use) and `precision_target`."""
    from tqdm import tqdm

    precision, limit = config.precision, config.round_limit
    log = RoundLog(precision=precision)
    rows: dict[str, list[dict]] = {}
    start = time.perf_counter()
    bar = tqdm(total=limit, desc=desc, unit="round", disable=None, leave=False, file=sys.stderr)
    try:
        for index in range(limit):
            load = runtime.load_average()
            round_start = time.perf_counter()
            with quiet_gc():
                measured = measure_round(index)
            wall_s = time.perf_counter() - round_start
            for name, arm_rows in measured.items():
                facts = {"round_load": load and load[0], "round_wall_s": wall_s}
                rows.setdefault(name, []).extend({**r, "round": index, **facts} for r in arm_rows)
            log.rounds = index + 1
            elapsed = time.perf_counter() - start
            bar.update(1)
            if precision is None:
                _progress_line(bar, desc, log.rounds, limit, None)
                continue
            samples = current_samples(rows)
            log.half_width = round_stats.half_widths(samples)
            widest = max(log.half_width.values(), default=math.nan)
            eta = _eta_s(samples, precision, log.rounds, elapsed / log.rounds)
            bar.set_postfix_str(f"±{widest:.1%} (target ±{precision:.0%}), eta {eta:.0f}s")
            reached = f"±{widest:.1%}, " if math.isfinite(widest) else ""
            _progress_line(bar, desc, log.rounds, limit, f"{reached}target ±{precision:.1%}")
            if log.rounds >= MIN_ROUNDS and log.half_width and all(w <= precision for w in log.half_width.values()):
                log.stopped = STOP_PRECISION
                break
            over = config.time_budget_s is not None and elapsed + elapsed / log.rounds > config.time_budget_s
            if over and log.rounds >= MIN_ROUNDS:  # the budget never stops a run before it has an interval
                log.stopped = STOP_BUDGET
                break
        else:
            log.stopped = STOP_EXACT if precision is None else STOP_MAX
    finally:
        bar.close()
    log.elapsed_s = time.perf_counter() - start
    samples = current_samples(rows)
    if precision is None and samples.height:
        log.half_width = round_stats.half_widths(samples)
    flagged = {r for _, r in round_stats.outlier_rounds(samples)} if samples.height else set()
    log.outliers = sorted(flagged)
    for arm_rows in rows.values():
        for r in arm_rows:
            r.update(
                round_outlier=r["round"] in flagged,
                rounds_stopped=log.stopped,
                min_effect=config.min_effect,
                precision_target=precision,
            )
    return rows, log
