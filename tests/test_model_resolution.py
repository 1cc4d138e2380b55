"""One model resolution: `serve`, `bench --target`, `run endpoint` and the report name a spec's model by the same
directory, so `workbench serve --model default` and `workbench bench --target URL --model default` agree."""

import json
import signal
import subprocess
import sys

from workbench.endpoint import server, target_bench
from workbench.models import assets, build, loader
from workbench.paths import REPO_ROOT


def test_a_preset_resolves_to_one_directory_built_or_not(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "empty-cache"))  # `default` not built here: committed
    committed = assets.find_committed(build.get_recipe("default"))
    assert committed is not None, "the committed default weights no longer match their recipe"
    unbuilt, model_id = loader.resolve("default", build_missing=False)
    assert unbuilt == committed and model_id == "workbench/default"
    assert loader.resolve("default")[0] == unbuilt  # building finds the same committed directory
    assert server.resolve_model("default") == str(committed)
    missing = loader.resolve("nano", build_missing=False)[0]  # no committed nano: the cache entry a build writes
    assert missing == build.model_path("nano") and not missing.exists()


def test_served_default_is_the_model_bench_target_asks_for(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "empty-cache"))
    with server.serve("default", log_path=tmp_path / "default.log") as running:
        assert target_bench.served_model(running.url, "default") == running.model
        assert target_bench.load_tokenizer("default") is not None  # synthetic prompts fit its tokenizer


def test_serve_then_bench_target_with_the_same_spec(nano_path, tmp_path):
    """The CLI pair end to end on nano: `serve --model nano`, then `bench --target URL --model nano`."""
    serving = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--model", "nano", "--json", "--log", str(tmp_path / "s.log")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(serving.stdout.readline())
        assert info["model"] == str(nano_path) and info["model_spec"] == "nano"
        bench = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "bench", "--target", info["url"], "--model", "nano"]
            + ["--requests", "2", "--gen-tokens", "4", "--prompt-tokens", "8", "--trials", "1", "--json", "--no-save"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert bench.returncode == 0, bench.stderr
        summary = json.loads(bench.stdout.strip().splitlines()[-1])
        assert summary["model_id"] == str(nano_path) and summary["prompts"] == "tokenizer"
        assert summary["error_rate"] == 0
    finally:
        serving.send_signal(signal.SIGINT)
        serving.wait(30)
