"""Each experiment on the nano model with real MLX: rows in the schema, the baseline in the same run,
losslessness where the optimisation promises it, and config validation."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from workbench import experiments
from workbench.analysis import run_summary
from workbench.errors import ConfigError
from workbench.paths import REPO_ROOT
from workbench.present import experiment_charts
from workbench.results import store

PARAMS = sorted((REPO_ROOT / "params").glob("*.yaml"))
EXPERIMENT_PARAMS = [p for p in PARAMS if p.stem in experiments.names()]
SMALL = dict(
    prompt_tokens=16, gen_tokens=8, requests=2, trials=1, warmup=1, perplexity_chunks=2, task_count=4, fidelity_count=2
)


def run(name, values):
    return experiments.get(name).run(experiments.build_config(name, None, values))


def small_overrides(name: str, nano: str) -> dict:
    """Each experiment's own test module (tests/test_<name>.py) says how to shrink it for nano."""
    return importlib.import_module(f"test_{name}").small(nano)


def run_small(name: str, nano: str, **changes) -> pl.DataFrame:
    return run(name, {**SMALL, **small_overrides(name, nano), "model": nano, **changes})


def test_every_experiment_has_its_params_file_and_test():
    for name in experiments.names():
        assert (REPO_ROOT / "params" / f"{name}.yaml").is_file(), name
        assert isinstance(small_overrides(name, "nano"), dict), name


@pytest.mark.parametrize("path", EXPERIMENT_PARAMS, ids=lambda p: p.stem)
def test_params_file_runs_on_nano(path, nano_path):
    """Every params/<experiment>.yaml validates as written, then runs with its sizes shrunk for the nano model."""
    import yaml

    name = path.stem
    experiments.build_config(name, path)
    values = {
        **yaml.safe_load(path.read_text()),
        **SMALL,
        **small_overrides(name, str(nano_path)),
        "model": str(nano_path),
    }
    frame = run(name, values)
    assert list(frame.columns) == list(store.SCHEMA)
    assert "baseline" in set(frame["variant"])
    assert frame["run_id"].n_unique() == 1
    assert frame["family"].null_count() == 0, "every row says what its variant is"
    base_rounds = frame.filter((pl.col("variant") == "baseline") & (pl.col("kind") == "speed"))["round"].unique()
    assert base_rounds.len() >= 2, "the baseline is measured in at least two rounds (the A/A noise floor)"
    summaries = run_summary.variant_summaries(name, frame)
    assert {s["variant"] for s in summaries} == set(frame["variant"])
    json.dumps(summaries)  # the --json line must serialise
    # what notebooks/10_experiment.ipynb shows after the run (one experiment's notebook runs under papermill in
    # test_notebooks; the cells are the same for every experiment, so the per-experiment part is checked here)
    assert run_summary.summary_table(name, frame) is not None
    spec = experiment_charts.chart(name, frame).to_dict()
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/"), "an altair chart"
    assert json.dumps(spec["datasets"]), "the chart carries its data"


def test_lossless_optimisations_keep_greedy_outputs(nano_path):
    nano = str(nano_path)
    checks = {
        "batching": ["batch4"],
        "speculative": ["draft2", "draft3"],
        "prompt_cache": ["cached"],
    }
    for name, variants in checks.items():
        values = {**SMALL, **small_overrides(name, nano), "model": nano}
        frame = run(name, {**values, "continuous": False} if name == "batching" else values)
        summary = {s["variant"]: s for s in run_summary.variant_summaries(name, frame)}
        for variant in variants:
            assert summary[variant]["identical_to_baseline"] is True, (name, variant)


def test_requests_longer_than_the_models_context_are_refused_before_anything_runs():
    config = experiments.build_config("tradeoff", None, {"model": "nano", "prompt_tokens": 4090, "gen_tokens": 16})
    with pytest.raises(ConfigError, match=r"tradeoff\.prompt_tokens: a request would hold 4106 tokens; .* 4096"):
        experiments.check_models(config)


@pytest.mark.parametrize(
    "name, values, message",
    [
        ("quantise", {"variants": [{"bits": 7}]}, "quantise.variants"),
        ("quantise", {"group_size": 48}, "quantise.group_size"),
        ("batching", {"batch_sizes": [0]}, "batching.batch_sizes"),
        ("batching", {"arrival": "bursty"}, "batching.arrival"),
        ("speculative", {"num_draft_tokens": []}, "speculative.num_draft_tokens"),
        ("distill", {"alpha": 1.5}, "distill.alpha"),
        ("prompt_cache", {"prefix_tokens": "many"}, "prompt_cache.prefix_tokens"),
        ("response_cache", {"tiers": {"fast": "nano"}}, "response_cache.tiers"),
        ("batching", {"trials": 0}, "batching.trials"),
        ("quantise", {"colour": "red"}, "quantise.colour: Extra inputs are not permitted"),
        ("tradeoff", {"speculative": True, "batch_size": 4}, "tradeoff.speculative"),
        ("tradeoff", {"prompt_tokens": 99999999999}, "tradeoff.prompt_tokens"),
    ],
)
def test_impossible_configs_name_the_field(name, values, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        experiments.build_config(name, None, values)


def _cli(*args, outputs: Path):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_run_bad_params_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants:\n  - {bits: 7}\n")
    for args in (
        ["run", "quantise", "--params", str(bad)],
        ["run", "quantise", "--params", str(tmp_path / "x")],
        ["run", "speculative", "--params", str(REPO_ROOT / "params/speculative.yaml"), "--model", "/nope"],
    ):
        proc = _cli(*args, outputs=tmp_path / "out")
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (tmp_path / "out").exists()


def test_cli_run_json_summaries(tmp_path, nano_path):
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({**SMALL, "prefix_tokens": 64, "requests": 2}))
    proc = _cli(
        "run", "prompt_cache", "--params", str(params), "--model", str(nano_path), "--json", outputs=tmp_path / "out"
    )
    assert proc.returncode == 0, proc.stderr
    summaries = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [s["variant"] for s in summaries] == ["baseline", "cached"]
    for key in ("ttft_s", "decode_tps", "throughput_tps", "peak_mem_bytes", "identical_to_baseline"):
        assert key in summaries[1]
    assert list((tmp_path / "out" / "runs").glob("*/results.parquet"))
