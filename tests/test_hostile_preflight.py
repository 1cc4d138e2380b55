"""Hostile targets before and around a run (tests/hostile_server.py): a pre-flight reply that never ends or trickles
is one line within its deadline, a redirect is named, credentials are applied to requests and written nowhere,
a run whose every request failed exits 3, and a fault of our own surfaces only after the rows so far are kept."""

import time

import polars as pl
import pytest
from hostile_server import (
    MODEL,
    HostileServer,
    Request,
    endless_body,
    good_stream,
    redirect,
    run_cli,
    status_reply,
    trickle,
    written_files,
)

from workbench import cli
from workbench.endpoint import check_target
from workbench.errors import ConfigError
from workbench.redact import redact, redact_text

COMPLETIONS = ("POST", "/v1/completions")
SECRET = "pw-9f3kq7"
TOKEN = "tok-7x2mz5"


def test_redact_masks_the_password_of_every_url_in_a_text():
    text = f"at http://me:{SECRET}@h:1/v1 and redis://:{SECRET}@r:6379/0 and https://{TOKEN}@x/"
    assert SECRET not in redact_text(text) and TOKEN not in redact_text(text)
    assert "http://me:***@h:1/v1" in redact_text(text) and "redis://:***@r:6379/0" in redact_text(text)
    assert redact({"a": [f"http://u:{SECRET}@h"], "n": 1}) == {"a": ["http://u:***@h"], "n": 1}
    assert redact_text("http://127.0.0.1:8080/v1 user@example.org") == "http://127.0.0.1:8080/v1 user@example.org"


def test_a_models_listing_that_never_ends_is_one_line_within_the_cap():
    with HostileServer({("GET", "/v1/models"): endless_body}) as server:
        started = time.perf_counter()
        with pytest.raises(ConfigError, match=r"GET /v1/models answered more than 1 MiB"):
            check_target(server.url, MODEL, timeout_s=5)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("path", ["/health", "/v1/models"])
def test_a_trickling_preflight_reply_meets_the_whole_request_deadline(path):
    async def slow(request, writer):
        await trickle(request, writer, every_s=0.3, content_type="application/json")

    with HostileServer({("GET", path): slow}) as server:
        started = time.perf_counter()
        with pytest.raises(ConfigError, match=rf"did not answer GET {path} within 1 s"):
            check_target(server.url, MODEL, timeout_s=1)
    assert time.perf_counter() - started < 3


def test_a_preflight_redirect_names_its_location_unless_followed():
    with HostileServer() as real:
        with HostileServer({("GET", "/health"): redirect(f"{real.url}/health")}) as server:
            with pytest.raises(ConfigError, match=rf"redirects GET /health \(http 302\) to {real.url}/health"):
                check_target(server.url, MODEL)
            assert check_target(server.url, MODEL, access={"follow_redirects": True}) == MODEL


def test_credentials_in_the_url_never_reach_a_message(capsys):
    with HostileServer() as server:
        port = server.port
    url = f"http://user:{SECRET}@127.0.0.1:{port}/v1"  # the server is gone: the error must name the target
    assert cli.main(["bench", "--target", url, "--model", MODEL, "--no-save"]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and "user:***@127.0.0.1" in err and len(err.strip().splitlines()) == 1


def requests_of(server: HostileServer, path: str) -> list[Request]:
    return [r for r in server.requests if r.path == path]


@pytest.mark.parametrize("how", ["url", "api-key-env"])
def test_credentials_go_with_every_request_and_are_written_nowhere(how, tmp_path):
    outputs = tmp_path / "outputs"
    with HostileServer({COMPLETIONS: good_stream(3)}) as server:
        if how == "url":
            target, extra, env = server.url.replace("http://", f"http://user:{SECRET}@"), [], {}
        else:
            target, extra, env = server.url, ["--api-key-env", "HOSTILE_TOKEN"], {"HOSTILE_TOKEN": TOKEN}
        argv = ["bench", "--target", target, "--model", MODEL, "--requests", "2", "--warmup", "0"]
        argv += ["--trials", "1", "--gen-tokens", "3", *extra]
        done = run_cli(argv, outputs=outputs, env=env)
    assert done.returncode == 0, done.stderr
    headers = {r.headers.get("authorization") for r in server.requests}
    expected = "Basic " if how == "url" else f"Bearer {TOKEN}"
    assert len(headers) == 1 and headers.pop().startswith(expected)  # pre-flight and measured requests alike
    files = written_files(outputs)
    assert {f.name for f in files} >= {"params.yaml", "env.json", "results.parquet", "manifest.json"}
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and TOKEN.encode() not in data, path
    assert SECRET not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    frame = pl.read_parquet(next(f for f in files if f.name == "results.parquet"))
    shown = frame["target"].unique().to_list()
    assert shown == ([server.url.replace("http://", "http://user:***@")] if how == "url" else [server.url])


def test_url_credentials_and_an_api_key_together_are_refused():
    with HostileServer() as server:
        with pytest.raises(ConfigError, match="not both"):
            check_target(server.url.replace("//", f"//u:{SECRET}@"), MODEL, access={"api_key_env": "HOME"})


def test_an_unset_api_key_variable_is_one_line_naming_it(monkeypatch):
    monkeypatch.delenv("HOSTILE_UNSET", raising=False)
    with HostileServer() as server, pytest.raises(ConfigError, match="HOSTILE_UNSET is not set"):
        check_target(server.url, MODEL, access={"api_key_env": "HOSTILE_UNSET"})


def test_a_run_where_every_request_failed_warns_and_exits_3_unless_allowed(capsys):
    with HostileServer({COMPLETIONS: status_reply(500)}) as server:
        argv = ["bench", "--target", server.url, "--model", MODEL, "--requests", "2", "--warmup", "0", "--trials", "1"]
        assert cli.main([*argv, "--json"]) == 3
        err = capsys.readouterr().err
        assert "warning: every one of the 2 requests failed (error rate 1.0; commonest: http 500" in err
        assert cli.main([*argv, "--json", "--allow-errors"]) == 0


def test_a_fault_of_ours_mid_run_surfaces_after_the_rows_so_far_are_kept(monkeypatch, tmp_path, capsys):
    import tempfile

    from workbench.endpoint import client

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real, calls = client.build_body, []

    def faulty(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("a bug of ours on the third request")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "build_body", faulty)
    with HostileServer({COMPLETIONS: good_stream(3)}) as server:
        argv = ["bench", "--target", server.url, "--model", MODEL, "--requests", "4", "--warmup", "0", "--trials", "1"]
        with pytest.raises(KeyError, match="a bug of ours"):
            cli.main(argv)
    err = capsys.readouterr().err
    assert "the run stopped on an error; its 2 rows so far are in" in err
    kept = pl.read_parquet(err.split("rows so far are in ")[1].split()[0])
    assert kept.height == 2 and kept["ok"].all() and set(kept["request_index"]) == {0, 1}


def test_a_probe_completion_that_never_ends_is_one_line():
    listing = status_reply(200, b"[]")  # a listing that is not one: the client probes with a 1-token completion
    with HostileServer({("GET", "/v1/models"): listing, COMPLETIONS: endless_body}) as server:
        with pytest.raises(ConfigError, match=r"POST /v1/completions answered more than 1 MiB"):
            check_target(server.url, MODEL)


def test_run_endpoint_where_every_served_request_failed_exits_3_unless_allowed(nano_path, tmp_path, capsys):
    params = tmp_path / "endpoint.yaml"
    with HostileServer({COMPLETIONS: status_reply(503)}) as server:
        params.write_text(
            f"model: {nano_path}\ntarget: {server.url}\nserved_model: {MODEL}\nin_process: false\nrequests: 2\n"
            "levels: [1]\nprompt_tokens: 8\ngen_tokens: 2\nrounds: 2\ntimeout_s: 5\n"
        )
        assert cli.main(["run", "endpoint", "--params", str(params)]) == 3
        err = capsys.readouterr().err
        warned = [line for line in err.splitlines() if line.startswith("warning: ")]  # after the rounds' step lines
        assert any("served requests failed (error rate 1.0; commonest: http 503" in line for line in warned), err
        assert "Traceback" not in err
        assert cli.main(["run", "endpoint", "--params", str(params), "--allow-errors"]) == 0
