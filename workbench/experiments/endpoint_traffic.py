"""The endpoint experiment on production-shaped traffic: a replayed trace (`trace:`) or live sessions (`sessions:`).

Same server handling, variants and rows as `experiments.endpoint` (which calls `run_traffic` when either is set):
- `trace:` replays the trace once per round as variant `served-trace` (`endpoint.replay`); a Mooncake trace's
  prompts are rebuilt each round from seed `seed + round`, so a round never finds the previous round's blocks in
  the server's prompt cache, while the blocks shared inside a round are shared exactly. The in-process baseline
  runs the same round's prompts one at a time. `profile` and `levels` do not apply.
- `sessions:` runs the file's sessions at each concurrency of `levels` as variant `served-s<C>`
  (`endpoint.sessions`), each round's sessions opening with a system line naming the round (so a round never
  replays a cached history from the one before). The in-process arm does not replay sessions (mlx-lm's prompt
  cache per session is not built here yet): `in_process: false` is required.

    workbench run endpoint --params params/endpoint_trace.yaml
"""

from __future__ import annotations

import dataclasses

import polars as pl

from workbench.endpoint import Target, replay, sessions
from workbench.endpoint import target_bench as endpoint_bench
from workbench.measure import timed
from workbench.models import loader
from workbench.workloads import chat
from workbench.workloads import sessions as session_files


def run_traffic(config, run_id: str, *, endpoint, frames) -> pl.DataFrame:
    """Rows of a `trace:` or `sessions:` endpoint run (see the module docstring); `endpoint` and `frames` are
    `experiments.endpoint`'s (the server or target, and the rows into frames)."""
    from workbench.paths import outputs_dir

    loaded = loader.load(config.model, dtype=config.dtype) if config.in_process else None
    tokenizer = loaded.tokenizer if loaded else endpoint_bench.load_tokenizer(config.model)
    context = endpoint_bench.model_context(config.model)
    rows: dict[str, list] = {}
    with endpoint(config, outputs_dir() / "servers" / f"{run_id}.log") as (url, name, facts):
        eos = sorted(tokenizer.eos_token_ids or []) if tokenizer is not None else []
        target = Target(url=url, model=name, chat=config.chat == "on", timeout_s=config.timeout_s, eos_token_ids=eos)
        warm = endpoint_bench.warmup_texts(tokenizer, prompt_tokens=16, count=config.warmup, measured=0, seed=1)
        if config.trace is not None:
            workload = trace_rounds(config, target, loaded, tokenizer, context, warm, rows)
        else:
            workload = session_rounds(config, target, rows)
    return frames(config, run_id, rows, [], loaded, workload, facts, url)


def trace_rounds(config, target: Target, loaded, tokenizer, context, warm, rows: dict) -> object:
    """Each round: the replay and (when `in_process`) the in-process baseline on the round's prompts, alternating."""
    workload = None
    for round_index in range(config.rounds):
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
        gen_tokens=plan.limits,
        trials=config.trials,
        warmup=config.warmup,
        round_index=round_index,
    )
    rows = [{**r.to_row(), "ok": True, "profile": "synchronous", "level": 1.0} for r in records]
    return [{**r, "item": r["request_index"]} for r in rows]


def tagged(session: session_files.Session, round_index: int) -> session_files.Session:
    """The session opening with a system line naming the round (see the module docstring)."""
    line = {"role": "system", "content": f"Session {session.session_id}, round {round_index}."}
    return dataclasses.replace(session, system=(line, *session.system))


def session_rounds(config, target: Target, rows: dict) -> object:
    options = config.sessions
    found, sha256 = session_files.read_sessions(options.path, limit=options.limit)
    workload = session_files.sessions_workload(
        options.path, found, sha256, think_time_s=options.think_time_s, gen_tokens=config.gen_tokens
    )
    chat_target = target.model_copy(update={"chat": True})
    for round_index in range(config.rounds):
        shift = round_index % len(config.levels)
        for level in config.levels[shift:] + config.levels[:shift]:
            result = sessions.run_sessions(
                chat_target,
                [tagged(s, round_index) for s in found],
                concurrency=int(level),
                think_time_s=options.think_time_s,
                gen_tokens=config.gen_tokens,
                trials=config.trials,
                warmup=config.warmup if round_index == 0 else 0,
            )
            rows.setdefault(f"served-s{int(level)}", []).extend(
                {**r, "round": round_index, "item": r["request_index"]} for r in result.rows
            )
    return workload
