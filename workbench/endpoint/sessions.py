"""Multi-turn chat sessions replayed live against a served endpoint: each turn waits for the previous reply.

A chat service's load is sessions, not independent requests: turn k+1 is sent only after turn k's reply has
completed (plus a think time), its history carries the server's *actual* reply, and a server with a prompt
cache (mlx_lm.server) can serve the shared history from it. Here `concurrency` sessions are in flight at once
(a closed loop over sessions); each turn is one row with `session_id` and `turn` (1, 2, ...), `arrival_s` the
moment it was due (the previous reply's end plus `think_time_s`; a session's first turn: its slot freeing) and
`sent_s` when it left, so the send lag covers sessions too. A failed turn ends its session (there is no reply to
continue from); the turns it never sent are counted as `unsent`. `per_turn` gives TTFT, TPOT and the server's
cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`) per turn index.

    workbench bench --target http://127.0.0.1:8080 --model M --sessions chats.jsonl --concurrency 8 \
        --think-time 1 --gen-tokens 32 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from typing import Any

from workbench import console, paths, runtime, stats
from workbench.endpoint import target_bench
from workbench.endpoint.client import EndpointClient, RequestOutcome, Target
from workbench.endpoint.load import Level, LevelResult, LoadOptions, run_async, warm_up
from workbench.endpoint.slo import lag_warning, summarise
from workbench.errors import UsageError
from workbench.measure import runs
from workbench.workloads import sessions as session_files
from workbench.workloads.sessions import Session


def history(session: Session, turn: int, replies: list[str]) -> list[dict[str, Any]]:
    """The messages sent for `turn` (0-based): system messages, then each earlier user turn and its served reply."""
    messages = list(session.system)
    for index in range(turn):
        messages += [
            {"role": "user", "content": session.turns[index]},
            {"role": "assistant", "content": replies[index]},
        ]
    return messages + [{"role": "user", "content": session.turns[turn]}]


async def run_sessions_async(
    client: EndpointClient,
    sessions: list[Session],
    *,
    concurrency: int,
    think_time_s: float = 0.0,
    gen_tokens: int,
    trial: int = 0,
) -> LevelResult:
    """Every session once, `concurrency` in flight; one row per turn sent."""
    start = time.perf_counter()
    queue = iter(range(len(sessions)))
    sent: list[tuple[RequestOutcome, str, int]] = []
    unsent = 0

    async def run_session(index: int, free_s: float) -> float:
        nonlocal unsent
        session, due_s = sessions[index], free_s
        replies: list[str] = []
        for turn in range(len(session.turns)):
            if turn:
                await asyncio.sleep(max(0.0, start + due_s - time.perf_counter()))
            outcome = RequestOutcome(index=len(sent), scheduled_s=due_s)
            sent.append((outcome, session.session_id, turn + 1))
            outcome.sent_s = time.perf_counter() - start
            await client.send(history(session, turn, replies), session.max_tokens or gen_tokens, outcome=outcome)
            if not outcome.ok:
                unsent += len(session.turns) - turn - 1
                return outcome.end - start
            replies.append(outcome.text)
            due_s = outcome.end - start + think_time_s
        return outcome.end - start

    async def worker() -> None:
        free_s = 0.0
        for index in queue:
            free_s = await run_session(index, free_s)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(sessions))))))
    window = max((o.end for o, _, _ in sent), default=start) - start
    facts = {"kind": "speed", "profile": "sessions", "level": float(concurrency), "trial": trial, "round": 0}
    facts |= {"window_s": window, "saturated": False}
    rows = [{**o.to_row(), **facts, "session_id": name, "turn": turn} for o, name, turn in sent]
    return LevelResult(Level("concurrency", max(1, concurrency)), rows, [o for o, _, _ in sent], unsent=unsent)


def run_sessions(
    target: Target, sessions: list[Session], options: LoadOptions, *, concurrency: int, think_time_s: float = 0.0
) -> LevelResult:
    """`run_sessions_async` `options.trials` times on one connection pool, after `options.warmup` unrecorded
    requests; every turn generates `options.max_tokens` (one count) tokens."""
    if not isinstance(options.max_tokens, int):
        raise ValueError("a sessions run generates one max_tokens for every turn")
    gen_tokens = options.max_tokens

    async def run() -> LevelResult:
        async with EndpointClient(target) as client:
            if options.warmup:
                warm = options.warmup_prompts or [[{"role": "user", "content": "hi"}]]
                await warm_up(client, warm, max_tokens=8, count=options.warmup)
            merged: LevelResult | None = None
            for trial in range(options.trials):
                result = await run_sessions_async(
                    client,
                    sessions,
                    concurrency=concurrency,
                    think_time_s=think_time_s,
                    gen_tokens=gen_tokens,
                    trial=trial,
                )
                if merged is None:
                    merged = result
                else:
                    merged.rows += result.rows
                    merged.outcomes += result.outcomes
                    merged.unsent += result.unsent
            assert merged is not None  # trials >= 1
            return merged

    return run_async(run())


def per_turn(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per turn index: requests, share ok, TTFT p50/p90, TPOT p50, mean prompt tokens and mean cached prompt tokens
    (None where the server reported none)."""
    by_turn = defaultdict(list)
    for row in rows:
        if row.get("turn") is not None:
            by_turn[row["turn"]].append(row)
    out = []
    for turn in sorted(by_turn):
        group = by_turn[turn]
        good = [r for r in group if r.get("ok")]
        ttft = stats.describe(r.get("ttft_s") for r in good)
        cached = [r["cached_tokens"] for r in good if r.get("cached_tokens") is not None]
        out.append(
            {
                "turn": turn,
                "requests": len(group),
                "ok": len(good),
                "ttft_s": ttft["p50"],
                "ttft_s_p90": ttft["p90"],
                "tpot_s": stats.describe(r.get("tpot_s") for r in good)["p50"],
                "prompt_tokens_mean": stats.describe(r.get("prompt_tokens") for r in good)["mean"],
                "cached_tokens_mean": sum(cached) / len(cached) if cached else None,
            }
        )
    return out


def main(args: argparse.Namespace) -> int:
    """`workbench bench --target URL --sessions FILE`: validate the file, run the sessions, save, print."""
    if not args.think_time >= 0:
        raise UsageError(f"--think-time must be >= 0 seconds, got {args.think_time}")
    sessions, sha256 = session_files.read_sessions(args.sessions, limit=args.requests)
    if not args.no_save:
        paths.check_writable(paths.outputs_dir() / "runs")
    load_before = runtime.load_average()
    access = {"api_key_env": args.api_key_env, "follow_redirects": args.follow_redirects}
    name = target_bench.served_model(args.target, args.model, access)
    tokenizer = target_bench.load_tokenizer(args.tokenizer or args.model or name)
    eos = sorted(tokenizer.eos_token_ids or []) if tokenizer is not None else []
    target = Target(url=args.target, model=name, chat=True, timeout_s=args.timeout, eos_token_ids=eos, **access)
    concurrency = args.concurrency[0] if isinstance(args.concurrency, list) else args.concurrency  # one level
    options = {"concurrency": concurrency, "think_time_s": args.think_time, "gen_tokens": args.gen_tokens}
    workload = session_files.sessions_workload(args.sessions, sessions, sha256, **options)
    load = LoadOptions(max_tokens=args.gen_tokens, trials=args.trials, warmup=args.warmup)
    result = run_sessions(target, sessions, load, concurrency=concurrency, think_time_s=args.think_time)
    params = {"sessions": args.sessions, **options, "trials": args.trials, "warmup": args.warmup}
    frame = target_bench.bench_frame(result.rows, target=target, workload=workload, params=params, run_id=None)
    summary = {"target": target.base_url, "model_id": name, "sessions": len(sessions), "eos_suppressed": bool(eos)}
    summary |= summarise(result.rows)
    summary["unsent"] = result.unsent
    turns = per_turn(result.rows)
    summary["per_turn"] = turns
    if warning := lag_warning(summary):
        print(f"warning: {warning}", file=sys.stderr)
    runs.save_and_print(args, frame, summary, command="bench", load_before=load_before)
    if not args.json:
        console.print_table({f"turn {t['turn']}": turn_line(t) for t in turns})
    return 0


def turn_line(turn: dict[str, Any]) -> str:
    cached = "not reported" if turn["cached_tokens_mean"] is None else f"{turn['cached_tokens_mean']:.0f}"
    return (
        f"{turn['ok']}/{turn['requests']} ok, TTFT p50 {1000 * turn['ttft_s']:.1f} ms, "
        f"TPOT p50 {1000 * turn['tpot_s']:.1f} ms, prompt {turn['prompt_tokens_mean']:.0f} tok, cached {cached}"
    )
