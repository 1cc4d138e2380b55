"""The endpoint experiment on nano behind a real `mlx_lm.server` started by `workbench serve`: every load profile
gives rows of the asked output length with no errors; the saturation search stops at the first level that
fails its SLO; a dead target is one line before anything runs. `small` is what the generic tests override.
notebooks/80_endpoint.ipynb runs under papermill in tests/test_notebooks.py."""

import polars as pl
import pytest
from test_experiments import run_small

from workbench import experiments
from workbench.analysis import run_summary
from workbench.endpoint import server
from workbench.errors import ConfigError


def small(nano: str) -> dict:
    return {"requests": 3, "levels": [1, 2], "gen_tokens": 6, "prompt_tokens": 16, "timeout_s": 30}


@pytest.fixture(scope="module")
def served(nano_path, tmp_path_factory):
    with server.serve(str(nano_path), log_path=tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


def speed_rows(frame: pl.DataFrame, variant_prefix: str = "served") -> pl.DataFrame:
    return frame.filter((pl.col("kind") == "speed") & pl.col("variant").str.starts_with(variant_prefix))


@pytest.mark.parametrize(
    "profile, levels, expected",
    [
        ("synchronous", [1], {"served-sync"}),
        ("concurrency", [1, 3], {"served-c1", "served-c3"}),
        ("rate", [20], {"served-r20"}),
        ("throughput", [1], {"served-max"}),
    ],
)
def test_each_load_profile_gives_full_length_rows_without_errors(nano_path, served, profile, levels, expected):
    target = {"target": served.url, "served_model": served.model}
    frame = run_small("endpoint", str(nano_path), profile=profile, levels=levels, **target)
    rows = speed_rows(frame)
    assert set(rows["variant"]) == expected
    assert rows["ok"].all() and rows["error"].null_count() == rows.height
    assert (rows["generated_tokens"] == 6).all(), "EOS suppressed: every request generates the asked length"
    assert rows["round"].n_unique() == 2 and (rows["target"] == served.url).all()
    assert rows["prompt_tokens"].min() >= 16, "the server counted the whole synthetic prompt"
    baseline = frame.filter((pl.col("variant") == "baseline") & (pl.col("kind") == "speed"))
    assert baseline["workload_hash"].unique().to_list() == rows["workload_hash"].unique().to_list()
    startup = frame.filter(kind="startup")
    assert set(startup["variant"]) == {"baseline", sorted(expected)[0]} and (startup["ttft_s"] > 0).all()


def test_saturation_search_stops_at_the_first_level_that_misses_its_slo(nano_path, served):
    target = {"target": served.url, "served_model": served.model}
    slo = {"ttft_s_max": 1e-6}  # no request can meet it: the first level fails and the search stops there
    frame = run_small("endpoint", str(nano_path), profile="saturation", levels=[1, 2, 4], slo=slo, **target)
    assert set(speed_rows(frame)["variant"]) == {"served-c1"}
    summary = {s["variant"]: s for s in run_summary.variant_summaries("endpoint", frame)}
    assert summary["served-c1"]["slo_pass"] is False and summary["served-c1"]["goodput_rps"] == 0

    frame = run_small("endpoint", str(nano_path), profile="saturation", levels=[1, 2], slo={"ttft_s_max": 30}, **target)
    assert set(speed_rows(frame)["variant"]) == {"served-c1", "served-c2"}
    summary = {s["variant"]: s for s in run_summary.variant_summaries("endpoint", frame)}
    assert all(summary[v]["slo_pass"] for v in ("served-c1", "served-c2"))


def test_server_flags_are_checked_with_the_config():
    with pytest.raises(ConfigError, match="decode_concurency"):
        experiments.build_config("endpoint", None, {"server": {"decode_concurency": 4}})
    with pytest.raises(ConfigError, match="endpoint.server"):
        experiments.build_config("endpoint", None, {"server": {"decode_concurrency": 4}, "target": "http://x:1"})
    with pytest.raises(ConfigError, match="endpoint.levels"):
        experiments.build_config("endpoint", None, {"profile": "concurrency", "levels": [1.5]})


def test_an_unreachable_target_is_one_line_before_anything_is_written(nano_path, _outputs):
    import subprocess
    import sys

    port = server.free_port()
    params = _outputs.parent / "dead.yaml"
    params.write_text(f"target: http://127.0.0.1:{port}\nrequests: 2\n")
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "run",
        "endpoint",
        "--params",
        str(params),
        "--model",
        str(nano_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(port) in done.stderr
    assert not (_outputs / "runs").exists() or not any((_outputs / "runs").iterdir())
