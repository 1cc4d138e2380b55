"""The response_cache experiment on a real `redis-server` (Debian's package), started here on a free port
with no persistence and stopped afterwards; installed with apt-get when missing, else the tests skip saying why."""

import shutil
import socket
import subprocess
import time

import pytest
from test_experiments import run_small

from workbench import experiments
from workbench.analysis import run_summary
from workbench.errors import ConfigError
from workbench.experiments import response_cache


def _redis_server() -> str:
    import os

    found = shutil.which("redis-server")
    if not found and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        for step in (["apt-get", "install", "-y", "-qq", "redis-server"], ["apt-get", "update", "-qq"]) * 2:
            if shutil.which("redis-server"):
                break
            subprocess.run(step, capture_output=True, timeout=900)
        found = shutil.which("redis-server")
    if not found:
        pytest.skip("redis-server is not installed and could not be installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="the redis client is not installed (pip install redis)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    executable = _redis_server()
    port, folder = _free_port(), tmp_path_factory.mktemp("redis")
    flags = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    proc = subprocess.Popen([executable, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response_cache.connect_redis(url)
                break
            except ConfigError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_response_cache_in_redis_hits_every_repeat(nano_path, redis_url):
    client = response_cache.connect_redis(redis_url)
    client.config_resetstat()
    frame = run_small("response_cache", str(nano_path), redis_url=redis_url, requests=12)
    speed = frame.filter(kind="speed", variant="response-cache")
    rounds = speed["round"].n_unique()
    # a fresh (cold) cache per round: every request of a round whose query came earlier in it is a hit
    order = response_cache.zipf_stream(4, 12, 1.1, 0)
    repeats = len(order) - len(set(order))
    assert repeats > 0 and speed["cache_hit"].sum() == repeats * rounds
    # ...and they were Redis's hits: its own counters agree, lookups and all
    stats = client.info("stats")
    assert stats["keyspace_hits"] == repeats * rounds
    assert stats["keyspace_misses"] == len(set(order)) * rounds
    summary = {s["variant"]: s for s in run_summary.variant_summaries("response_cache", frame)}
    cached = summary["response-cache"]
    assert cached["backend"] == "redis" and cached["cache_keys"] == len(set(order))
    assert 0 < cached["cache_bytes"] < cached["redis_used_memory_bytes"]
    assert cached["hit_rate"] == pytest.approx(repeats / len(order))
    assert cached["e2e_saved_s_mean"] > 0 and cached["hit_e2e_s_p50"] < summary["baseline"]["e2e_s_p50"]
    assert cached["task_accuracy"] == summary["baseline"]["task_accuracy"]
    assert client.dbsize() == 0, "the run deletes its keys once it has measured them"
    served = set(speed.filter(cache_hit=True)["request_index"].to_list())
    assert all(order[i] in order[:i] for i in served)


def test_unreachable_redis_is_a_one_line_config_error_before_anything_runs(nano_path):
    pytest.importorskip("redis", reason="the redis client is not installed (pip install redis)")
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    config = experiments.build_config("response_cache", None, {"model": str(nano_path), "redis_url": url})
    with pytest.raises(ConfigError, match=f"response_cache.redis_url: no Redis answers at '{url}'"):
        experiments.check_models(config)
