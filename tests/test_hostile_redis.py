"""Redis as an external service that fails: a real `redis-server` (started as tests/test_redis.py does) killed in the
middle of a response-cache run. The run finishes, every request is a row (the failed lookups are misses whose rows say
why), the rows are saved, and `workbench run` shows the error count; a Redis password is written nowhere."""

import subprocess
import time

import polars as pl
import pytest
from hostile_server import written_files
from test_experiments import SMALL
from test_redis import _free_port, _redis_server

from workbench import cli, experiments
from workbench.analysis import run_summary
from workbench.errors import ConfigError
from workbench.experiments import response_cache as serving

SECRET = "redis-pw-4k9d"


@pytest.fixture
def doomed_redis(tmp_path):
    """A redis-server of this test's own, to be killed mid-run: (url, process)."""
    executable = _redis_server()
    port = _free_port()
    flags = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    flags += ["--requirepass", SECRET]
    proc = subprocess.Popen([executable, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            serving.connect_redis(url)
            break
        except ConfigError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.1)
    yield url, proc
    proc.kill()
    proc.wait(10)


def kill_after(monkeypatch, proc, answers: int) -> None:
    """Kill Redis once `answers` answers have been generated (the middle of the first round)."""
    real, count = serving._answer, []

    def answer(*args, **kwargs):
        count.append(1)
        if len(count) == answers:
            proc.kill()
            proc.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(serving, "_answer", answer)


def test_redis_killed_mid_run_leaves_every_row_saved_and_the_errors_counted(
    doomed_redis, nano_path, monkeypatch, tmp_path, _outputs
):
    url, proc = doomed_redis
    monkeypatch.setenv("HOSTILE_REDIS_URL", url)
    kill_after(monkeypatch, proc, answers=6)
    values = {**SMALL, "model": str(nano_path), "unique_queries": 4, "requests": 12, "rounds": 2}
    config = experiments.build_config("response_cache", None, {**values, "redis_url_env": "HOSTILE_REDIS_URL"})
    frame, run_dir = experiments.run_and_save(config)
    speed = frame.filter(kind="speed")
    assert speed.height == 2 * 12 * 2  # both variants, every request of both rounds: nothing lost
    saved = pl.read_parquet(run_dir / "results.parquet")
    assert saved.height == frame.height
    cached = speed.filter(variant="response-cache")
    errors = cached["error"].drop_nulls()
    assert errors.len() > 0 and errors.str.starts_with("cache: ").all()
    assert cached.filter(pl.col("error").is_not_null())["cache_hit"].sum() == 0  # a failed lookup is a miss
    assert speed.filter(variant="baseline")["error"].null_count() == 24
    assert cached["e2e_s"].min() > 0 and cached["generated_tokens"].min() > 0
    summary = {s["variant"]: s for s in run_summary.variant_summaries("response_cache", frame)}
    assert summary["response-cache"]["cache_errors"] == errors.len()
    assert summary["response-cache"]["hit_rate"] < 1
    for path in written_files(_outputs):
        assert SECRET.encode() not in path.read_bytes(), path


def test_workbench_run_shows_the_redis_errors_and_writes_no_password(
    doomed_redis, nano_path, monkeypatch, tmp_path, _outputs, capsys
):
    url, proc = doomed_redis
    kill_after(monkeypatch, proc, answers=3)
    params = tmp_path / "response_cache.yaml"
    values = {**SMALL, "model": str(nano_path), "unique_queries": 4, "requests": 8, "rounds": 2, "redis_url": url}
    params.write_text("".join(f"{k}: {v!r}\n".replace("'", '"') for k, v in values.items()))
    assert cli.main(["run", "response_cache", "--params", str(params)]) == 0
    captured = capsys.readouterr()
    # the terminal table shows the headline columns; the error count is the warning line (and the rows/summary above)
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "met a cache error and were served as misses" in warning[0]
    assert SECRET not in captured.out + captured.err
    files = written_files(_outputs)
    assert any(p.name == "params.yaml" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert ":***@127.0.0.1" in next(p for p in files if p.name == "params.yaml").read_text()


def test_an_unreachable_redis_url_is_one_line_without_its_password():
    url = f"redis://:{SECRET}@127.0.0.1:{_free_port()}/0"
    with pytest.raises(ConfigError) as caught:
        serving.connect_redis(url)
    assert SECRET not in str(caught.value) and "redis://:***@127.0.0.1" in str(caught.value)
