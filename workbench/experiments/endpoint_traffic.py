"""The endpoint experiment on production-shaped traffic: a replayed trace (`trace:`) or live sessions (`sessions:`).

Same server handling, variants and rows as `experiments.endpoint` (which calls `run_traffic` when either is set):
- `trace:` replays the trace once per round as variant `served-trace` (`endpoint.replay`); a Mooncake trace's
  prompts are rebuilt each round from seed `seed + round`, so a round never finds the previous round's blocks in
  the server's prompt cache, while the blocks shared inside a round are shared exactly. The in-process baseline
  runs the same round's prompts one at a time. `profile` and `levels` do not apply.
- `sessions:` runs the file's sessions at each concurrency of `levels` as variant `served-s<C>`
  (`endpoint.sessions`), each round's sessions opening with a system line naming the round (so a round never
  replays a cached history from the one before). The in-process arm (`baseline`) replays the same sessions one
  at a time with a prompt cache per session, as mlx_lm.server keeps one: each turn's history (with the arm's own
  replies) is rendered as the server renders it (the chat template, or mlx-lm's `convert_chat` without one), the
  cache is trimmed to the longest prefix it shares with it, and only the rest is prefilled; `cached_tokens` is that
  prefix, so both sides report cached prompt tokens per turn.

    workbench run endpoint --params params/endpoint_trace.yaml
"""

from __future__ import annotations

import dataclasses

import polars as pl

from workbench.endpoint import LoadOptions, Target, replay, sessions
from workbench.endpoint import target_bench as endpoint_bench
from workbench.experiments.base import DEFAULT_ROUNDS
from workbench.experiments.endpoint_rows import Measured, frames
from workbench.measure import timed
from workbench.models import loader
from workbench.workloads import chat
from workbench.workloads import sessions as session_files


def run_traffic(config, run_id: str, *, endpoint) -> pl.DataFrame:
    """Rows of a `trace:` or `sessions:` endpoint run (see the module docstring); `endpoint` is
    `experiments.endpoint`'s (the server or the target)."""
    from workbench.paths import outputs_dir

    loaded = loader.load(config.model, dtype=config.dtype) if config.in_process else None
    tokenizer = loaded.tokenizer if loaded else endpoint_bench.load_tokenizer(config.model)
    context = endpoint_bench.model_context(config.model)
    rows: dict[str, list] = {}
    with endpoint(config, outputs_dir() / "servers" / f"{run_id}.log") as (url, name, facts):
        eos = sorted(tokenizer.eos_token_ids or []) if tokenizer is not None else []
        target = Target(
            url=url,
            model=name,
            chat=config.chat == "on",
            timeout_s=config.timeout_s,
            eos_token_ids=eos,
            **config.access,
        )
        warm = endpoint_bench.warmup_texts(tokenizer, prompt_tokens=16, count=config.warmup, measured=0, seed=1)
        if config.trace is not None:
            workload = trace_rounds(config, target, loaded, tokenizer, context, warm, rows)
        else:
            workload = session_rounds(config, target, loaded, rows)
    return frames(config, run_id, Measured(rows, [], facts, url), loaded=loaded, workload=workload)


def trace_rounds(config, target: Target, loaded, tokenizer, context, warm, rows: dict) -> object:
    """Each round: the replay and (when `in_process`) the in-process baseline on the round's prompts, alternating."""
    workload = None
    for round_index in range(config.rounds or DEFAULT_ROUNDS):  # trace/sessions: exact rounds, no precision loop yet
        plan = replay.plan_replay(
            config.trace,
            tokenizer,
            gen_tokens=config.gen_tokens,
            seed=config.seed + round_index,
            context_tokens=context,
        )
        workload = workload or plan.workload
        arms = ["served", "baseline"] if loaded is not None else ["served"]
        for arm in arms if round_index % 2 == 0 else arms[::-1]:
            if arm == "baseline":
                rows.setdefault("baseline", []).extend(in_process(config, loaded, plan, round_index))
                continue
            result = replay.replay(target, plan, trials=config.trials, warmup=config.warmup, warmup_prompts=warm)
            rows.setdefault("served-trace", []).extend(
                {**r, "round": round_index, "item": r["request_index"]} for r in result.rows
            )
    return workload


def in_process(config, loaded, plan: replay.ReplayPlan, round_index: int) -> list[dict]:
    tokens = [
        loaded.tokenizer.encode(p) if isinstance(p, str) else chat.render(loaded.tokenizer, messages=p, chat="auto")[0]
        for p in plan.prompts
    ]
    records = timed.measure_generation(
        loaded.model,
        loaded.tokenizer,
        tokens,
        timed.Schedule(trials=config.trials, warmup=config.warmup, round_index=round_index),
        gen_tokens=plan.limits,
    )
    rows = [{**r.to_row(), "ok": True, "profile": "synchronous", "level": 1.0} for r in records]
    return [{**r, "item": r["request_index"]} for r in rows]


def tagged(session: session_files.Session, round_index: int) -> session_files.Session:
    """The session opening with a system line naming the round (see the module docstring)."""
    line = {"role": "system", "content": f"Session {session.session_id}, round {round_index}."}
    return dataclasses.replace(session, system=(line, *session.system))


def render_like_server(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt token ids mlx_lm.server builds for chat messages."""
    if getattr(tokenizer, "chat_template", None):
        return [int(t) for t in tokenizer.apply_chat_template(messages, add_generation_prompt=True)]
    from mlx_lm.server import convert_chat

    return list(tokenizer.encode(convert_chat(messages)))


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def in_process_sessions(config, loaded, found: list, round_index: int) -> list[dict]:
    """Every session in process, one at a time, each turn prefilling only what its prompt cache lacks."""
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    rows: list[dict] = []
    with timed.eos_disabled(loaded.tokenizer):
        for _ in range(config.warmup):
            timed.stream_timed(loaded.model, loaded.tokenizer, loaded.tokenizer.encode("warm up"), config.gen_tokens)
        for session in found:
            cache = make_prompt_cache(loaded.model)
            held: list[int] = []
            replies: list[str] = []
            for turn in range(len(session.turns)):
                tokens = render_like_server(loaded.tokenizer, sessions.history(session, turn, replies))
                reuse = min(common_prefix(held, tokens), len(tokens) - 1)
                if len(held) > reuse:
                    trim_prompt_cache(cache, len(held) - reuse)
                limit = session.max_tokens or config.gen_tokens
                timeline = timed.stream_timed(loaded.model, loaded.tokenizer, tokens[reuse:], limit, prompt_cache=cache)
                held = (tokens + timeline.tokens)[: cache[0].offset]
                replies.append(timeline.text)
                facts = {"ok": True, "profile": "sessions", "level": 1.0, "trial": 0, "round": round_index}
                facts |= {"session_id": session.session_id, "turn": turn + 1, "cached_tokens": reuse}
                rows.append({**timeline.metrics(), **facts, "prompt_tokens": len(tokens), "request_index": len(rows)})
    return [{**r, "item": r["request_index"]} for r in rows]


def session_rounds(config, target: Target, loaded, rows: dict) -> object:
    options = config.sessions
    found, sha256 = session_files.read_sessions(options.path, limit=options.limit)
    workload = session_files.sessions_workload(
        options.path, found, sha256, think_time_s=options.think_time_s, gen_tokens=config.gen_tokens
    )
    chat_target = target.model_copy(update={"chat": True})
    arms = ([None] if loaded is not None else []) + list(config.levels)
    for round_index in range(config.rounds or DEFAULT_ROUNDS):  # trace/sessions: exact rounds, no precision loop yet
        shift = round_index % len(arms)
        tagged_sessions = [tagged(s, round_index) for s in found]
        for level in arms[shift:] + arms[:shift]:
            if level is None:
                rows.setdefault("baseline", []).extend(
                    in_process_sessions(config, loaded, tagged_sessions, round_index)
                )
                continue
            load = LoadOptions(
                max_tokens=config.gen_tokens, trials=config.trials, warmup=config.warmup if round_index == 0 else 0
            )
            result = sessions.run_sessions(
                chat_target, tagged_sessions, load, concurrency=int(level), think_time_s=options.think_time_s
            )
            rows.setdefault(f"served-s{int(level)}", []).extend(
                {**r, "round": round_index, "item": r["request_index"]} for r in result.rows
            )
    return workload
