"""Trace replay against a served endpoint: every request of a timestamped trace sent at its own (scaled) time.

A trace's bursts and its prefix reuse (Mooncake `hash_ids`) are what make a server's batching and prompt cache
show their real effect; Poisson arrivals on independent prompts have neither. The trace is read and its prompts
built by `workbench.workloads.trace` (pure); here they are sent in an open loop at the trace's offsets
(`load.Level("trace", speed)`), each row keeping its scheduled `arrival_s` and actual `sent_s`, so the send lag
(`slo.send_lag`) says whether the replay delivered the trace's load. A bad trace is one line before anything is
sent or written.

    workbench bench --target http://127.0.0.1:8080 --model M --trace mooncake.jsonl [--trace-speed 2] \
        [--trace-limit 100] [--trace-window 0:60] [--trace-block-tokens 512] [--json]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench import paths, runtime
from workbench.endpoint import target_bench
from workbench.endpoint.client import Target
from workbench.endpoint.load import Level, LevelResult, LoadOptions, run_levels
from workbench.endpoint.slo import lag_warning, summarise
from workbench.errors import ModelError, UsageError
from workbench.measure import runs
from workbench.workloads import prompt_sets, trace

if TYPE_CHECKING:
    from mlx_lm.tokenizer_utils import TokenizerWrapper


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay sends: prompts, their max_tokens and send offsets (s), and the workload for the rows."""

    prompts: list[Any]
    limits: list[int]
    arrivals_s: list[float]
    workload: prompt_sets.Workload
    speed: float


def plan_replay(
    options: trace.TraceOptions,
    tokenizer: TokenizerWrapper | None,
    *,
    gen_tokens: int,
    seed: int = 0,
    context_tokens: int | None = None,
) -> ReplayPlan:
    """Read the trace (one-line `DataError` for a bad one) and build its prompts with `tokenizer`."""
    read = trace.read_trace(options, context_tokens=context_tokens)
    prompts, limits, workload = trace.trace_prompts(read, tokenizer, gen_tokens=gen_tokens, seed=seed)
    return ReplayPlan(prompts, limits, read.arrivals_s(), workload, options.speed)


def replay(
    target: Target, plan: ReplayPlan, *, trials: int = 1, warmup: int = 0, warmup_prompts: list[str] | None = None
) -> LevelResult:
    """Send the plan's requests at their offsets, `trials` times; `warmup` unrecorded requests first."""
    results = run_levels(
        target,
        plan.prompts,
        [Level("trace", plan.speed)],
        LoadOptions(
            max_tokens=plan.limits,
            trials=trials,
            warmup=warmup,
            warmup_prompts=warmup_prompts,
            arrivals=plan.arrivals_s,
        ),
    )
    return results[0]


def options_from_args(args: argparse.Namespace) -> trace.TraceOptions:
    try:
        window = trace.parse_window(args.trace_window) if args.trace_window else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.trace_speed > 0:
        raise UsageError(f"--trace-speed must be > 0, got {args.trace_speed}")
    return trace.TraceOptions(
        path=args.trace,
        speed=args.trace_speed,
        limit=args.trace_limit,
        window_s=window,
        block_tokens=args.trace_block_tokens,
    )


def main(args: argparse.Namespace) -> int:
    """`workbench bench --target URL --trace FILE`: validate the trace, replay it, save the rows, print the summary."""
    options = options_from_args(args)
    spec = args.tokenizer or args.model
    tokenizer = target_bench.load_tokenizer(spec)
    if args.tokenizer and tokenizer is None:
        raise ModelError(f"tokenizer {args.tokenizer!r} is not a preset or a local model directory")
    limit = target_bench.model_context(spec)
    plan = plan_replay(options, tokenizer, gen_tokens=args.gen_tokens, seed=args.seed, context_tokens=limit)
    if not args.no_save:
        paths.check_writable(paths.outputs_dir() / "runs")
    load_before = runtime.load_average()
    access = {"api_key_env": args.api_key_env, "follow_redirects": args.follow_redirects}
    name = target_bench.served_model(args.target, args.model, access)
    eos = sorted(tokenizer.eos_token_ids or []) if tokenizer is not None else []
    target = Target(
        url=args.target, model=name, chat=args.chat == "on", timeout_s=args.timeout, eos_token_ids=eos, **access
    )
    warm = target_bench.warmup_texts(tokenizer, prompt_tokens=args.prompt_tokens, count=args.warmup, measured=0)
    result = replay(target, plan, trials=args.trials, warmup=args.warmup, warmup_prompts=warm or None)
    rows = [{**row, **plan.workload.request_facts(row["request_index"])} for row in result.rows]
    params = {"trace": options.model_dump(), "requests": len(plan.prompts), "timeout_s": args.timeout}
    params |= {"trials": args.trials, "warmup": args.warmup, "seed": args.seed, "gen_tokens": args.gen_tokens}
    frame = target_bench.bench_frame(rows, target=target, workload=plan.workload, params=params, run_id=None)
    summary = {"target": target.base_url, "model_id": name, "trace": options.path, "eos_suppressed": bool(eos)}
    summary |= summarise(rows)
    summary["unsent"] = result.unsent
    if warning := lag_warning(summary):
        print(f"warning: {warning}", file=sys.stderr)
    runs.save_and_print(args, frame, summary, command="bench", load_before=load_before)
    return 0
