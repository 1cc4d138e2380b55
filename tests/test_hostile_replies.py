"""Hostile replies to streamed requests (tests/hostile_server.py, raw asyncio on 127.0.0.1): each one fails that
request with a reason, never the run; the run ends within its deadline, memory stays bounded, and no rate is
negative or infinite. The server's timings describe nothing; these tests check control flow and bounds only."""

import asyncio
import json
import math
import resource
import time

import polars as pl
import pytest
from hostile_server import (
    MODEL,
    HostileServer,
    chunks_reply,
    endless_stream,
    good_stream,
    gzip_stream,
    long_line,
    redirect,
    run_cli,
    text_chunk,
    trickle,
    usage_reply,
)

from workbench.endpoint import Level, LoadOptions, Target, run_levels, summarise
from workbench.endpoint.client import EndpointClient
from workbench.results import store

COMPLETIONS = ("POST", "/v1/completions")
CHAT = ("POST", "/v1/chat/completions")


def send_one(url: str, *, prompt="a b c", max_tokens=4, **target):
    async def go():
        async with EndpointClient(Target(url=url, model=MODEL, **target)) as client:
            return await client.send(prompt, max_tokens)

    return asyncio.run(go())


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


BROKEN = {
    "100 MB SSE line": (long_line, {}, "malformed: an SSE line longer than 1 MiB"),
    "gzip zeros, no newline": (gzip_stream(b"\0"), {}, "malformed: an SSE line longer than 1 MiB"),
    "gzip keep-alives forever": (
        gzip_stream(b": ping\n\n", block_bytes=64 << 10, pause_s=0.05),
        {"timeout_s": 2, "stall_s": 1},
        "timed out: no complete reply in 2 s",
    ),
    "a byte every 0.2 s": (trickle, {"timeout_s": 1.5, "stall_s": 1}, "timed out: no complete reply in 1.5 s"),
    "endless valid chunks": (endless_stream, {"timeout_s": 30}, "malformed: more than 104 content chunks"),
    "endless keep-alives": (gzip_stream(b": k\n"), {"timeout_s": 30}, "malformed: reply longer than 16"),
    "choices of strings": (chunks_reply({"choices": ["x"]}), {}, "malformed: choices[0] is a str, not an object"),
    "choices an object": (chunks_reply({"choices": {"0": text_chunk()}}), {}, "malformed: choices is a dict"),
    "text a list": (chunks_reply({"choices": [{"text": ["x"]}]}), {}, "malformed: choices[0].text is a list"),
    "finish_reason a number": (chunks_reply({"choices": [{"text": "a", "finish_reason": 7}]}), {}, "malformed: fin"),
    "JSON 100,000 deep": (chunks_reply(b"[" * 100_000 + b"]" * 100_000), {}, "malformed: chunk is not JSON"),
    "error object 100,000 deep": (chunks_reply(b'{"error": ' + b"[" * 900 + b"]" * 900 + b"}"), {}, "server error"),
}


@pytest.mark.parametrize("attack", BROKEN, ids=list(BROKEN))
def test_a_broken_reply_is_a_failed_row_with_its_reason(attack):
    handler, target, reason = BROKEN[attack]
    before = peak_rss_bytes()
    with HostileServer({COMPLETIONS: handler}) as server:
        started = time.perf_counter()
        outcome = send_one(server.url, **target)
        elapsed = time.perf_counter() - started
    assert not outcome.ok and outcome.error.startswith(reason), outcome.error
    assert elapsed < target.get("timeout_s", 60) + 3  # the whole-request deadline holds, data arriving or not
    assert peak_rss_bytes() - before < 300 << 20  # nothing read past the line and reply caps
    row = outcome.to_row()
    assert row["ok"] is False and "ttft_s" not in row and len(row["error"]) <= 200


def test_content_of_the_wrong_type_in_a_chat_stream_is_a_failed_row():
    delta = chunks_reply({"choices": [{"delta": {"content": 5}}]})
    with HostileServer({CHAT: delta}) as server:
        outcome = send_one(server.url, chat=True)
    assert outcome.error == "malformed: delta.content is a int, not a string"


HOSTILE_USAGE = {
    "string": {"prompt_tokens": 3, "completion_tokens": "500"},
    "list": {"completion_tokens": [500]},
    "NaN": b'{"prompt_tokens": NaN, "completion_tokens": NaN}',
    "1e30": {"completion_tokens": 1e30},
    "10**30": {"prompt_tokens": 10**30, "completion_tokens": 10**30},
    "negative": {"prompt_tokens": -7, "completion_tokens": -500},
    "boolean": {"completion_tokens": True},
    "cached a string": {"completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": "all"}},
    "usage a string": "lots",
    "usage a list": [1, 2, 3],
}


@pytest.mark.parametrize("name", HOSTILE_USAGE, ids=list(HOSTILE_USAGE))
def test_implausible_usage_is_ignored_with_a_note_and_rates_stay_honest(name):
    with HostileServer({COMPLETIONS: usage_reply(HOSTILE_USAGE[name])}) as server:
        target = Target(url=server.url, model=MODEL)
        result = run_levels(target, ["a b c"] * 3, [Level("concurrency", 2)], LoadOptions(max_tokens=4))[0]
    rows = result.rows
    assert all(r["ok"] for r in rows), [r["error"] for r in rows]
    assert all("ignored" in r["note"] for r in rows), rows[0]["note"]
    counted = {r["generated_tokens"] for r in rows}
    assert counted <= {3}  # the client's own count (content chunks) stands in for an implausible one
    assert all(r["prompt_tokens"] is None or 0 <= r["prompt_tokens"] <= 10**7 for r in rows)
    summary = summarise(rows)
    for key in ("throughput_tps", "throughput_rps", "goodput_rps", "ttft_s", "e2e_s"):
        assert math.isfinite(summary[key]) and summary[key] >= 0, (key, summary[key])
    for row in rows:
        for key in ("decode_tps", "prefill_tps", "tpot_s"):
            value = row.get(key)
            assert value is None or math.isnan(value) or (math.isfinite(value) and value >= 0), (key, value)
    frame = store.to_frame(rows, run_id="r", experiment="bench", target=server.url)
    assert frame.height == 3 and frame["note"].str.contains("ignored").all()


def test_a_redirect_is_a_failed_row_naming_its_location_unless_followed():
    with HostileServer({COMPLETIONS: good_stream(3)}) as elsewhere:
        moved = f"{elsewhere.url}/v1/completions"
        with HostileServer({COMPLETIONS: redirect(moved, 307)}) as server:
            refused = send_one(server.url)
            followed = send_one(server.url, follow_redirects=True)
    assert (refused.ok, refused.error) == (False, f"redirected: http 307 to {moved}")
    assert len(elsewhere.requests) == 1  # only the followed request reached it
    assert followed.ok and followed.generated_tokens == 3
    row = followed.to_row()
    assert row["final_url"] == moved  # the row says where the reply came from


def test_a_302_is_never_silently_turned_into_a_get():
    with HostileServer({COMPLETIONS: good_stream(3), ("GET", "/v1/completions"): good_stream(3)}) as elsewhere:
        with HostileServer({COMPLETIONS: redirect(f"{elsewhere.url}/v1/completions")}) as server:
            outcome = send_one(server.url)
    assert outcome.error.startswith("redirected: http 302 to http://127.0.0.1:") and elsewhere.requests == []


def test_every_attack_in_one_cli_run_leaves_honest_rows_bounded_memory_and_no_traceback(tmp_path):
    """`workbench bench --target` in its own process against a server whose every request is another attack."""
    with HostileServer({COMPLETIONS: good_stream(3)}) as elsewhere:
        attacks = [
            long_line,
            gzip_stream(b"\0"),
            usage_reply({"completion_tokens": -500}),
            chunks_reply({"choices": ["x"]}),
            good_stream(3),
            redirect(f"{elsewhere.url}/v1/completions"),
            endless_stream,
            trickle,
        ]
        with HostileServer({COMPLETIONS: attacks}) as server:
            argv = ["bench", "--target", server.url, "--model", MODEL, "--requests", str(len(attacks))]
            argv += ["--warmup", "0", "--trials", "1", "--gen-tokens", "3", "--timeout", "4", "--json"]
            done = run_cli(argv, outputs=tmp_path / "outputs", timeout_s=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.peak_rss_bytes < 1 << 30, (done.peak_rss_bytes, done.stderr)
    assert done.wall_s < 120
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["requests"] == len(attacks) and summary["ok"] == 2
    assert summary["throughput_tps"] > 0 and summary["generated_tokens_min"] == 3  # -500 was not believed
    frame = pl.read_parquet(f"{summary['run_dir']}/results.parquet").sort("request_index")
    errors = frame["error"].to_list()
    assert errors[0].startswith("malformed: an SSE line longer") and errors[1].startswith("malformed: an SSE line")
    assert errors[2] is None and "completion_tokens -500 ignored" in frame["note"][2]
    assert errors[3].startswith("malformed: choices[0]") and errors[4] is None
    assert errors[5].startswith("redirected: http 302")
    assert errors[6].startswith("malformed: more than 94 content chunks for max_tokens 3")
    assert errors[7].startswith("timed out: no complete reply in 4 s")
    assert (frame["decode_tps"].drop_nulls().drop_nans() >= 0).all()
