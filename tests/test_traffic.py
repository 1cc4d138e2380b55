"""Production-shaped traffic against a real `mlx_lm.server` on nano: trace replay (send lag, hash-id token blocks)
and live multi-turn sessions (every history carries the replies the server actually sent, read back from a
recording proxy in front of the server); bad trace and session files are one line, exit 2, nothing written."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import polars as pl
import pytest

from workbench.endpoint import LoadOptions, replay, server, sessions
from workbench.endpoint.client import Target
from workbench.endpoint.slo import summarise
from workbench.workloads import sessions as session_files
from workbench.workloads import trace

BLOCK = 32


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def mooncake_rows(count: int = 12, gap_ms: int = 150) -> list[dict]:
    """Requests that share a system-prompt block (hash id 1), pairs that share a second block, and own tails."""
    rows = []
    for i in range(count):
        ids = [1, 100 + i // 2, 1000 + i]
        rows.append({"timestamp": i * gap_ms, "input_length": 2 * BLOCK + 5 + i, "output_length": 4, "hash_ids": ids})
    return rows


@pytest.fixture(scope="module")
def tokenizer(nano_path):
    from workbench.endpoint.target_bench import load_tokenizer

    return load_tokenizer(str(nano_path))


@pytest.fixture(scope="module")
def served(nano_path, tmp_path_factory):
    with server.serve(str(nano_path), log_path=tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


def test_prompts_share_exactly_the_token_blocks_whose_hash_ids_match(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", mooncake_rows(6))
    read = trace.read_trace(trace.TraceOptions(path=path, block_tokens=BLOCK), context_tokens=4096)
    texts, limits, workload = trace.trace_prompts(read, tokenizer, gen_tokens=8)
    ids = [trace.encode(tokenizer, text) for text in texts]  # what the server tokenizes each prompt to
    assert [len(p) for p in ids] == [r.input_length for r in read.requests] and limits == [4] * 6
    for a in range(6):
        for b in range(a + 1, 6):
            for block in range(3):
                span = slice(block * BLOCK, (block + 1) * BLOCK)
                same_id = read.requests[a].hash_ids[block] == read.requests[b].hash_ids[block]
                shorter = min(len(ids[a][span]), len(ids[b][span]))
                assert (ids[a][span][:shorter] == ids[b][span][:shorter]) == same_id, (a, b, block)
    other = trace.TraceOptions(path=path, block_tokens=BLOCK, speed=2.0)
    assert trace.trace_prompts(trace.read_trace(other), tokenizer, gen_tokens=8)[2].hash != workload.hash
    write_jsonl(tmp_path / "t.jsonl", mooncake_rows(6, gap_ms=151))
    again = trace.read_trace(trace.TraceOptions(path=path, block_tokens=BLOCK))
    assert trace.trace_prompts(again, tokenizer, gen_tokens=8)[2].hash != workload.hash, "the file's bytes count"


def test_window_limit_and_speed_shape_the_schedule(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", mooncake_rows(10, gap_ms=1000))
    read = trace.read_trace(trace.TraceOptions(path=path, block_tokens=BLOCK, window_s=[2, 7], limit=3, speed=2))
    assert [r.timestamp_ms for r in read.requests] == [2000, 3000, 4000]
    assert read.arrivals_s() == [0.0, 0.5, 1.0]


def test_a_trace_replays_against_mlx_lm_server_on_time(tmp_path, served, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", mooncake_rows(12))
    plan = replay.plan_replay(trace.TraceOptions(path=path, block_tokens=BLOCK), tokenizer, gen_tokens=8)
    target = Target(url=served.url, model=served.model, eos_token_ids=sorted(tokenizer.eos_token_ids))
    result = replay.replay(target, plan, warmup=1, warmup_prompts=["warm up the connection"])
    summary = summarise(result.rows)
    assert summary["ok"] == 12 and summary["profile"] == "trace" and summary["level"] == 1.0
    assert [r["arrival_s"] for r in result.rows] == pytest.approx(plan.arrivals_s)
    assert summary["send_lag_s_p99"] < 0.010, summary["send_lag_s_p99"]
    assert not summary["fell_behind"]
    lengths = [r.input_length for r in trace.read_trace(trace.TraceOptions(path=path, block_tokens=BLOCK)).requests]
    assert all(r["prompt_tokens"] >= n for r, n in zip(result.rows, lengths)), "the server counted every token"


class RecordingProxy:
    """An HTTP proxy in front of the server that keeps every JSON body it forwards (what the server received)."""

    def __init__(self, upstream: str):
        self.upstream, self.bodies, self.port = upstream, [], server.free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, ready):
        from aiohttp import ClientSession, web

        async def forward(request):
            body = await request.read()
            if body:
                self.bodies.append(json.loads(body))
            async with ClientSession() as session:
                headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
                async with session.request(
                    request.method, self.upstream + request.path, data=body, headers=headers
                ) as up:
                    reply = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["Content-Type"]})
                    await reply.prepare(request)
                    async for chunk in up.content.iter_any():
                        await reply.write(chunk)
                    await reply.write_eof()
                    return reply

        async def start():
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", forward)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def session_rows(count: int = 8, turns: int = 4) -> list[dict]:
    return [
        {
            "id": f"s{s}",
            "messages": [{"role": "user", "content": f"session {s} turn {t}: tell me more"} for t in range(turns)],
        }
        for s in range(count)
    ]


def test_sessions_carry_the_served_replies_in_their_history(tmp_path, served, tokenizer):
    found, _ = session_files.read_sessions(write_jsonl(tmp_path / "s.jsonl", session_rows()))
    proxy = RecordingProxy(served.url)
    try:
        target = Target(url=proxy.url, model=served.model, chat=True, eos_token_ids=sorted(tokenizer.eos_token_ids))
        result = sessions.run_sessions(target, found, LoadOptions(max_tokens=6), concurrency=8, think_time_s=0.2)
    finally:
        proxy.close()
    assert len(result.rows) == 32 and all(r["ok"] for r in result.rows) and result.unsent == 0
    replies = {(r["session_id"], r["turn"]): o.text for r, o in zip(result.rows, result.outcomes)}
    received = [b for b in proxy.bodies if "messages" in b]
    assert len(received) == 32
    for body in received:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        session_id, turn = users[-1].split(":")[0].replace("session ", "s").split(" turn ")
        served_replies = [m["content"] for m in body["messages"] if m["role"] == "assistant"]
        assert served_replies == [replies[(session_id, k)] for k in range(1, int(turn) + 1)]
        assert all(served_replies) or int(turn) == 0
    by_key = {(r["session_id"], r["turn"]): r for r in result.rows}
    for (session_id, turn), row in by_key.items():  # turn k+1 leaves only after turn k's reply and the think time
        if turn > 1:
            before = by_key[(session_id, turn - 1)]
            assert row["sent_s"] >= before["sent_s"] + before["e2e_s"] + 0.2
            assert row["sent_s"] - row["arrival_s"] < 0.05
    table = {t["turn"]: t for t in sessions.per_turn(result.rows)}
    assert sorted(table) == [1, 2, 3, 4] and all(table[t]["requests"] == 8 for t in table)
    assert table[2]["cached_tokens_mean"] is not None and table[2]["cached_tokens_mean"] > 0
    assert table[4]["prompt_tokens_mean"] > table[1]["prompt_tokens_mean"]


BAD_TRACES = [
    (
        [
            {"timestamp": 10, "input_length": 40, "output_length": 4},
            {"timestamp": 5, "input_length": 40, "output_length": 4},
        ],
        ":2: timestamp 5 is before",
    ),
    ([{"timestamp": -1, "input_length": 40, "output_length": 4}], ":1: timestamp -1 is negative"),
    ([{"timestamp": 0, "input_length": 40}], ":1: no output_length"),
    ([{"timestamp": 0, "input_length": 5000, "output_length": 4}], ":1: input_length 5000 + output_length 4 exceeds"),
    ([{"timestamp": 0, "input_length": 40, "output_length": 4, "hash_ids": [1, 2, 3]}], ":1: 3 hash_ids"),
    (['{"timestamp": 0, "input_length": 4'], ":1: invalid JSON"),
]


def run_cli(*args: str):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("rows, message", BAD_TRACES, ids=range(len(BAD_TRACES)))
def test_a_bad_trace_is_one_line_naming_the_line_and_nothing_is_written(tmp_path, _outputs, nano_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    dead = f"http://127.0.0.1:{server.free_port()}"
    done = run_cli("bench", "--target", dead, "--model", str(nano_path), "--trace", path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and path in done.stderr and message in done.stderr, done.stderr
    assert not _outputs.exists() or not any(_outputs.rglob("results.parquet"))


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": [{"role": "assistant", "content": "no user"}]}, ":1: the session has no user turn"),
        ({"conversations": [{"from": "robot", "value": "x"}]}, ":1: conversations[0] has an unknown speaker"),
        ({"prompt": "not a session"}, ":1: a session row needs conversations"),
    ],
)
def test_a_bad_sessions_file_is_one_line_and_nothing_is_written(tmp_path, _outputs, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    dead = f"http://127.0.0.1:{server.free_port()}"
    done = run_cli("bench", "--target", dead, "--sessions", path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and path in done.stderr and message in done.stderr, done.stderr
    assert not _outputs.exists() or not any(_outputs.rglob("results.parquet"))


def test_bench_trace_cli_writes_rows_with_send_lag(tmp_path, served, nano_path, capsys):
    from workbench.measure import bench

    path = write_jsonl(tmp_path / "t.jsonl", mooncake_rows(6, gap_ms=100))
    argv = ["--target", served.url, "--model", str(nano_path), "--trace", path, "--trace-block-tokens", str(BLOCK)]
    assert bench.main([*argv, "--trials", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 6 and summary["send_lag_s_p99"] < 0.05
    frame = pl.read_parquet(f"{summary['run_dir']}/results.parquet")
    assert frame["workload"][0] == "trace:t.jsonl" and frame["arrival_s"].null_count() == 0


def test_endpoint_experiment_replays_a_trace_and_runs_sessions_into_the_report_section(tmp_path, served, nano_path):
    from test_experiments import run_small

    from workbench.present import endpoint_section, endpoint_tables, tables

    target = {"target": served.url, "served_model": served.model, "timeout_s": 30}
    path = write_jsonl(tmp_path / "t.jsonl", mooncake_rows(5, gap_ms=100))
    frame = run_small("endpoint", str(nano_path), trace={"path": path, "block_tokens": BLOCK}, **target)
    replayed = frame.filter(variant="served-trace")
    assert replayed.height == 10 and replayed["ok"].all() and set(replayed["round"]) == {0, 1}
    assert frame.filter((pl.col("variant") == "baseline") & (pl.col("kind") == "speed")).height == 10
    assert replayed["workload"][0] == "trace:t.jsonl"

    sessions_path = write_jsonl(tmp_path / "s.jsonl", session_rows(3, 2))
    options = {"sessions": {"path": sessions_path, "think_time_s": 0.05}, "levels": [2]}
    played = run_small("endpoint", str(nano_path), **options, **target)
    for variant in ("served-s2", "baseline"):
        rows = played.filter((pl.col("variant") == variant) & (pl.col("kind") == "speed"))
        assert rows.height == 12 and rows["ok"].all() and set(rows["turn"]) == {1, 2}, variant
        assert rows.filter(turn=2)["cached_tokens"].min() > 0, f"{variant}: turn 2 reuses turn 1's prompt and reply"

    section = endpoint_section.from_rows(pl.concat([frame, played], how="diagonal_relaxed"))
    assert section.replay.height == 10 and section.replay["ttft_s"].min() > 0
    served_turns = section.turns.filter(variant="served-s2")
    assert served_turns["turn"].to_list() == [1, 2] and served_turns["requests"].to_list() == [6, 6]
    assert set(section.turns["variant"]) == {"served-s2", "baseline"}
    assert "endpoint_replay_ttft" in endpoint_section.figures(section)
    assert "Send lag" in tables.html(endpoint_tables.endpoint_levels(section))
    assert "Cached prompt tokens" in tables.html(endpoint_tables.endpoint_turns(section))
