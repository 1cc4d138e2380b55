"""The endpoint client against the local stub server (workbench.endpoint.stub): failures become rows with reasons,
bad targets are one-line exit-2 errors, each load profile's control flow, the saturation search and over-saturation.
The stub's timings describe nothing but the stub; these tests check control flow, never speed."""

import asyncio
import json
import math
import socket

import polars as pl
import pytest

from workbench import cli
from workbench.endpoint import (
    SLO,
    Level,
    LoadOptions,
    OverSaturation,
    Target,
    check_target,
    run_levels,
    search_saturation,
    summarise,
)
from workbench.endpoint.client import EndpointClient
from workbench.endpoint.load import CANCELLED
from workbench.endpoint.slo import short_output_warning
from workbench.endpoint.stub import StubThread
from workbench.errors import ConfigError, ModelError
from workbench.results import store
from workbench.workloads.arrivals import poisson_arrivals


def send_one(url: str, *, prompt="a b c", max_tokens=4, **target):
    async def go():
        async with EndpointClient(Target(url=url, model=target.pop("model", "stub"), **target)) as client:
            return await client.send(prompt, max_tokens)

    return asyncio.run(go())


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_streamed_request_gives_the_shared_metrics():
    with StubThread(token_delay_s=0.002, tokens_per_chunk=2) as stub:
        outcome = send_one(stub.url, max_tokens=8)
    row = outcome.to_row()
    assert row["ok"] and row["error"] is None
    assert row["generated_tokens"] == 8 and row["chunks"] == 4  # the server's usage, not the chunk count
    assert len(row["itl_s"]) == 3  # ITL: gaps between chunks
    chunks = outcome.chunk_times
    assert row["tpot_s"] == pytest.approx((chunks[-1] - chunks[0]) / 7)  # TPOT: the span over the tokens
    assert row["ttft_s"] == pytest.approx(chunks[0] - outcome.t0) and row["e2e_s"] >= row["ttft_s"]


@pytest.mark.parametrize(
    ("stub_fields", "target_fields", "reason"),
    [
        ({"mode": "http500"}, {}, "http 500: "),
        ({"mode": "stall"}, {"stall_s": 0.3}, "stalled: no chunk for 0.3 s"),
        ({"mode": "malformed"}, {}, "malformed: not an SSE stream"),
        ({"mode": "garbage"}, {}, "malformed: chunk is not JSON"),
        ({"token_delay_s": 0.1}, {"timeout_s": 0.4}, "timed out: no complete reply in 0.4 s"),
        ({}, {"model": "other"}, "http 404: "),
    ],
)
def test_every_failure_is_an_outcome_with_a_reason(stub_fields, target_fields, reason):
    with StubThread(**stub_fields) as stub:
        outcome = send_one(stub.url, max_tokens=10, **target_fields)
    assert not outcome.ok and outcome.error.startswith(reason), outcome.error
    row = outcome.to_row()
    assert row["ok"] is False and row["error"] == outcome.error and "ttft_s" not in row


def test_connection_refused_is_an_outcome():
    outcome = send_one(closed_port())
    assert (outcome.ok, outcome.error) == (False, "connection refused")


def test_failed_requests_count_in_error_rate_and_goodput():
    with StubThread(mode="http500") as stub:
        target = Target(url=stub.url, model="stub")
        rows = run_levels(target, ["x"] * 4, [Level("concurrency", 2)], LoadOptions(max_tokens=2))[0].rows
    frame = store.to_frame(rows, run_id="r", experiment="bench", target=stub.url)
    assert frame.height == 4 and frame["error"].str.starts_with("http 500").all()
    summary = summarise(rows)
    assert summary["error_rate"] == 1.0 and summary["goodput_rps"] == 0 and not summary["slo_pass"]


def test_check_target_errors_are_one_line():
    with pytest.raises(ConfigError, match="unreachable"):
        check_target(closed_port(), "stub")
    with StubThread() as stub:
        assert check_target(stub.url + "/v1/", None) == "stub"
        with pytest.raises(ModelError, match="'nope' is not served .* it serves: stub"):
            check_target(stub.url, "nope")


def test_bench_target_unreachable_or_wrong_model_exits_2(capsys):
    assert cli.main(["bench", "--target", closed_port(), "--model", "stub", "--no-save"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error: target http://127.0.0.1:") and "unreachable" in err
    assert len(err.splitlines()) == 1
    with StubThread() as stub:
        assert cli.main(["bench", "--target", stub.url, "--model", "nope", "--no-save"]) == 2
    assert "'nope' is not served" in capsys.readouterr().err


def test_bench_target_json_and_rows(capsys, _outputs):
    with StubThread(token_delay_s=0.001) as stub:
        argv = ["bench", "--target", stub.url, "--concurrency", "2", "--requests", "6", "--gen-tokens", "5"]
        assert cli.main([*argv, "--trials", "2", "--json"]) == 0
        prompts = stub.server.stub.prompts[:]
    assert len(prompts) == 13 and prompts[0] not in prompts[1:]  # the warm-up prompt is none of the measured six
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ttft_s", "tpot_s", "itl_s_p50", "e2e_s", "throughput_tps", "throughput_rps", "error_rate"):
        assert isinstance(summary[key], float) and summary[key] >= 0
    assert summary["generated_tokens_mean"] == 5 and summary["requests"] == 12 and summary["model_id"] == "stub"
    frame = pl.read_parquet(f"{summary['run_dir']}/results.parquet")
    assert frame.height == 12 and frame["target"].unique().to_list() == [stub.url]
    assert frame["ok"].all() and set(frame["trial"]) == {0, 1} and set(frame["profile"]) == {"concurrency"}


def test_warm_up_requests_go_first_on_their_own_prompts():
    with StubThread() as stub:
        target = Target(url=stub.url, model="stub")
        run_levels(
            target, ["a", "b"], [Level("synchronous")], LoadOptions(max_tokens=[2, 3], warmup=3, warmup_prompts=["w"])
        )
        assert stub.server.stub.prompts == ["w", "w", "w", "a", "b"]
        stub.server.stub.prompts.clear()
        run_levels(target, ["a", "b"], [Level("synchronous")], LoadOptions(max_tokens=2, warmup=1))
        assert stub.server.stub.prompts == ["a", "a", "b"]  # without prompts of its own the warm-up reuses the first


def test_eos_suppression_keeps_the_asked_length_and_short_outputs_warn():
    with StubThread(eos_after=3) as stub:
        target = Target(url=stub.url, model="stub")
        short = run_levels(target, ["x"] * 3, [Level("synchronous")], LoadOptions(max_tokens=6))[0].summary(
            gen_tokens=6
        )
        full_target = target.model_copy(update={"eos_token_ids": [0]})
        full = run_levels(full_target, ["x"] * 3, [Level("synchronous")], LoadOptions(max_tokens=6))[0].summary(
            gen_tokens=6
        )
    assert (short["short_outputs"], short["generated_tokens_min"]) == (3, 3)
    assert "3 of 3 requests generated fewer than 6 tokens" in short_output_warning(short, 6)
    assert (full["short_outputs"], full["generated_tokens_mean"]) == (0, 6)
    assert short_output_warning(full, 6) is None


def test_profiles_control_how_many_requests_are_in_flight():
    target_fields = {"token_delay_s": 0.01}
    prompts = ["x"] * 8
    peaks = {}
    for level in (Level("synchronous"), Level("concurrency", 3), Level("throughput")):
        with StubThread(**target_fields) as stub:
            result = run_levels(Target(url=stub.url, model="stub"), prompts, [level], LoadOptions(max_tokens=3))[0]
            peaks[level.profile] = stub.server.stub.peak_in_flight
        assert len(result.rows) == 8 and all(r["ok"] and r["profile"] == level.profile for r in result.rows)
    assert peaks == {"synchronous": 1, "concurrency": 3, "throughput": 8}


def test_rate_profile_sends_on_its_seeded_poisson_schedule():
    with StubThread() as stub:
        target = Target(url=stub.url, model="stub")
        result = run_levels(target, ["x"] * 10, [Level("rate", 40)], LoadOptions(max_tokens=2, seed=3))[0]
    due = poisson_arrivals(10, 40, seed=3)
    assert due == poisson_arrivals(10, 40, seed=3) != poisson_arrivals(10, 40, seed=4)
    rows = sorted(result.rows, key=lambda r: r["request_index"])
    assert [r["arrival_s"] for r in rows] == due and rows[0]["level"] == 40
    assert all(0 <= r["sent_s"] - r["arrival_s"] < 0.05 for r in rows)


def test_a_fault_in_the_load_loop_is_raised_not_lost():
    with StubThread() as stub, pytest.raises(TypeError, match="not JSON serializable"):
        run_levels(Target(url=stub.url, model="stub"), [object()], [Level("synchronous")], LoadOptions(max_tokens=2))


def test_saturation_search_stops_at_the_first_level_over_capacity():
    # the stub serves 2 requests at a time, 50 ms each: concurrency 2 keeps TTFT near 50 ms, 4 doubles it for half
    with StubThread(capacity=2, prefill_s=0.05) as stub:
        search = search_saturation(
            Target(url=stub.url, model="stub"),
            ["x"] * 8,
            LoadOptions(max_tokens=2),
            profile="concurrency",
            values=[4, 1, 2, 8],
            slo=SLO(ttft_s_max=0.08),
        )
    assert [s["level"] for s in search.summaries] == [1, 2, 4]  # 8 never ran
    assert (search.best, search.failed_at) == (2, 4)
    assert [s["slo_pass"] for s in search.summaries] == [True, True, False]


def test_over_saturation_stops_a_level_and_keeps_its_requests_as_rows():
    # 2 slots of 50 ms serve 40 req/s; 200 req/s queues without bound
    with StubThread(capacity=2, prefill_s=0.05) as stub:
        oversat = OverSaturation(min_seconds=0.4, min_requests=5, min_ttft_s=0.0, correlation_s=0.01)
        result = run_levels(
            Target(url=stub.url, model="stub"),
            ["x"] * 400,
            [Level("rate", 200)],
            LoadOptions(max_tokens=2, oversat=oversat),
        )[0]
    summary = result.summary()
    assert result.saturated and summary["saturated"] and not summary["slo_pass"]
    assert result.unsent > 200 and len(result.rows) + result.unsent == 400
    assert any(r["error"] == CANCELLED for r in result.rows) and all(r["saturated"] for r in result.rows)


def test_a_level_within_capacity_is_not_over_saturated():
    with StubThread(capacity=4, prefill_s=0.01) as stub:
        # one sample per 0.1 s: a busy machine's jitter must not read as a trend (it did at 0.01 s, under load)
        oversat = OverSaturation(min_seconds=0.3, min_requests=5, min_ttft_s=0.0, correlation_s=0.1)
        result = run_levels(
            Target(url=stub.url, model="stub"),
            ["x"] * 30,
            [Level("rate", 50)],
            LoadOptions(max_tokens=2, oversat=oversat),
        )[0]
    assert not result.saturated and result.unsent == 0 and all(r["ok"] for r in result.rows)


def test_goodput_counts_only_requests_meeting_every_limit():
    rows = [
        {"ok": True, "ttft_s": 0.1, "tpot_s": 0.01, "e2e_s": 0.5, "generated_tokens": 4, "window_s": 2.0},
        {"ok": True, "ttft_s": 0.3, "tpot_s": 0.01, "e2e_s": 0.5, "generated_tokens": 4, "window_s": 2.0},
        {"ok": True, "ttft_s": 0.1, "tpot_s": 0.05, "e2e_s": 0.5, "generated_tokens": 4, "window_s": 2.0},
        {"ok": False, "error": "http 500: x", "window_s": 2.0},
    ]
    summary = summarise(rows, SLO(ttft_s_max=0.2, tpot_s_max=0.02, error_rate_max=0.5, attainment_min=0.25))
    assert summary["goodput_rps"] == 0.5 and summary["throughput_rps"] == 1.5 and summary["error_rate"] == 0.25
    assert summary["slo_attainment"] == 0.25 and summary["slo_pass"] and summary["top_error"] == "http 500: x"
    assert math.isclose(summary["throughput_tps"], 6.0)
