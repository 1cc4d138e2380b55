"""`workbench serve` and `endpoint.server.serve` on nano with a real `mlx_lm.server`: it answers, logs, reports its
cold start, and leaves no process behind, whether the block ends, Ctrl-C stops the CLI or the parent is killed."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import psutil
import pytest

from workbench.endpoint import server
from workbench.errors import ConfigError, ModelError
from workbench.paths import REPO_ROOT


def gone(pid: int, within_s: float = 10.0) -> bool:
    """True once `pid` no longer runs (a zombie waiting to be reaped counts as gone)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_serves_nano_answers_logs_and_stops(nano_path, tmp_path):
    log = tmp_path / "server.log"
    with server.serve(str(nano_path), log_path=log, server_args=server.server_args(decode_concurrency=2)) as running:
        with urllib.request.urlopen(f"{running.url}/health", timeout=10) as reply:
            assert json.loads(reply.read()) == {"status": "ok"}
        with urllib.request.urlopen(f"{running.url}/v1/models", timeout=10) as reply:
            assert running.model in [m["id"] for m in json.loads(reply.read())["data"]]
        body = {"model": running.model, "prompt": "The key is", "max_tokens": 4}
        answer = post(f"{running.url}/v1/completions", body)
        assert answer["model"] == running.model and answer["usage"]["completion_tokens"] >= 1
        info = running.info()
        assert 0 < info["health_s"] <= info["startup_s"] < 180
        assert info["dtype"] == "float32" and info["args"] == ["--decode-concurrency", "2"]
        assert json.loads(json.dumps(info))["pid"] == running.pid
        assert psutil.Process(running.pid).is_running()
    assert gone(running.pid, 5), "the server outlived its `with` block"
    text = log.read_text()
    assert server.READY_MARKER in text and "POST /v1/completions" in text


def test_killed_parent_leaves_no_orphan(nano_path, tmp_path):
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from workbench.endpoint.server import serve
                with serve({str(nano_path)!r}, log_path={str(tmp_path / "s.log")!r}) as running:
                    print(running.pid, flush=True)
                    time.sleep(600)
            """),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    assert psutil.Process(child).is_running()
    parent.send_signal(signal.SIGKILL)  # no cleanup code in the parent runs
    parent.wait()
    assert gone(child, 5), "the server outlived its killed parent"


def test_cli_prints_the_server_and_stops_cleanly_on_ctrl_c(nano_path, tmp_path):
    log = tmp_path / "cli.log"
    proc = cli("--model", str(nano_path), "--log", str(log), "--json", "--prompt-cache-size", "2")
    try:
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:") and info["model"] == str(nano_path)
        assert info["args"] == ["--prompt-cache-size", "2"] and info["log_path"] == str(log)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert gone(info["pid"], 5)


def test_bad_model_is_one_line_exit_2():
    proc = cli("--model", "no-such-model", "--duration", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("workbench: error: model 'no-such-model' not found")


def test_server_that_dies_at_start_is_one_line_with_its_log_tail(tmp_path, nano_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text((nano_path / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ModelError, match=r"exited with code 3 before it was ready; log .*the model failed to load"):
        with server.serve(str(broken), log_path=tmp_path / "broken.log"):
            pass
    proc = cli("--model", str(nano_path), "--log", str(tmp_path / "bad-flag.log"), "--bogus-flag", "1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "unrecognized arguments: --bogus-flag 1" in err and "bad-flag.log" in err


def test_server_args_and_model_flags():
    args = server.server_args(decode_concurrency=8, kv_bits=None, prompt_cache_bytes="2GB", draft_model="nano")
    assert args == ["--decode-concurrency", "8", "--prompt-cache-bytes", "2GB", "--draft-model", "nano"]
    with pytest.raises(ConfigError, match="decode_concurency"):
        server.server_args(decode_concurency=8)
    with pytest.raises(ConfigError, match="expected int"):
        server.server_args(kv_bits="eight")
    resolved = server.resolve_args(["--draft-model", "nano", "--temp=0.0"], base="nano")
    assert os.path.isabs(resolved[1]) and resolved[2] == "--temp=0.0"
    with pytest.raises(ConfigError, match="--port is set by `serve`"):
        server.resolve_args(["--port", "80"], base="nano")
    with pytest.raises(ConfigError, match="distilled"):
        server.resolve_args(["--draft-model", "distilled"], base="nano")


def test_watchdog_exits_when_the_pipe_closes():
    code = "import sys, os; from workbench.endpoint.server import watch_parent; watch_parent(os.getppid()); sys.exit(9)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdin=subprocess.PIPE)
    time.sleep(1.0)
    assert proc.poll() is None, "the watchdog must wait while the pipe is open"
    proc.stdin.close()
    assert proc.wait(5) == 0  # os._exit(0) from the watchdog, not the sys.exit(9) after it


def test_a_port_taken_after_it_was_chosen_is_retried(nano_path, tmp_path, monkeypatch):
    """The server exits at once when its port is taken (mlx-lm alone would hang), and `serve` picks another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, real, calls = taken.getsockname()[1], server.free_port, []

        def free_port(port=0):
            calls.append(port)
            return busy if len(calls) == 1 else real(port)

        monkeypatch.setattr(server, "free_port", free_port)
        with server.serve(str(nano_path), log_path=tmp_path / "s.log", startup_timeout_s=60) as running:
            assert running.port != busy and len(calls) == 2
        monkeypatch.setattr(server, "free_port", real)
        with pytest.raises(ConfigError, match=f"port {busy} on 127.0.0.1 is not free"):
            with server.serve(str(nano_path), port=busy):
                pass
