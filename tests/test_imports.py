"""`workbench import` on real files: a GuideLLM 0.8.1 JSON and an AIPerf 0.13.0 export, both made against nano
behind mlx_lm.server at concurrency 2 (tests/fixtures/imports/README.md says how), and a vLLM file built from its
documented schema (labelled so in the file). Recomputed medians equal those of the tools' own per-request values;
bad files are one line naming the file (and line), exit 2, nothing written; the imports and a workbench run at
the same load land in one report section."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_experiments import run_small

from workbench import stats
from workbench.endpoint import server
from workbench.endpoint.slo import summarise
from workbench.imports import importer
from workbench.present import import_section, import_tables
from workbench.results import imported as imported_store

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
GUIDELLM = FIXTURES / "guidellm-0.8.1-nano-c2.json"
AIPERF = FIXTURES / "aiperf-0.13.0-nano-c2" / "profile_export.jsonl"
VLLM = FIXTURES / "vllm-schema-nano-c2.json"
CLI = "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))"


def workbench(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=120)


def imported(path: Path, tool: str, name: str) -> tuple[pl.DataFrame, dict]:
    importer.import_file(path, tool, name)
    return imported_store.load_import(name)


def test_guidellm_ttft_and_tpot_medians_are_those_of_its_own_per_request_values():
    rows, provenance = imported(GUIDELLM, "guidellm", "gl")
    assert (provenance["tool"], provenance["version"], provenance["per_request"]) == ("guidellm", "0.8.1", True)
    assert provenance["sha256"] == importer.sha256(GUIDELLM)
    own = json.loads(GUIDELLM.read_text())["benchmarks"][0]["requests"]["successful"]
    summary = summarise(rows.to_dicts())
    assert (summary["profile"], summary["level"], summary["requests"]) == ("concurrency", 2.0, len(own))
    assert summary["ttft_s"] * 1000 == pytest.approx(stats.percentile([r["time_to_first_token_ms"] for r in own], 50))
    # GuideLLM's "ITL" is our TPOT (guidellm#1144); its "TPOT" includes the first token
    assert summary["tpot_s"] * 1000 == pytest.approx(stats.percentile([r["inter_token_latency_ms"] for r in own], 50))
    assert rows["itl_s"].null_count() == rows.height, "GuideLLM keeps no chunk times: no ITL is made up"
    assert provenance["levels"][0]["tool_summary"]["time_per_output_token_ms.median"] > summary["tpot_s"] * 1000


def test_aiperf_medians_are_those_of_its_own_per_request_and_aggregate_values():
    rows, provenance = imported(AIPERF, "aiperf", "ai")
    assert (provenance["version"], provenance["per_request"]) == ("0.13.0", True)
    records = [json.loads(line) for line in AIPERF.read_text().splitlines()]
    profiling = [r["metrics"] for r in records if r["metadata"]["benchmark_phase"] == "profiling"]
    assert len(records) > len(profiling) == rows.height, "warm-up records are not rows"
    summary = summarise(rows.to_dicts())
    assert (summary["profile"], summary["level"]) == ("concurrency", 2.0)
    own_ttft = stats.percentile([m["time_to_first_token"]["value"] for m in profiling], 50)
    assert summary["ttft_s"] * 1000 == pytest.approx(own_ttft)
    assert summary["ttft_s"] * 1000 == pytest.approx(
        provenance["levels"][0]["tool_summary"]["time_to_first_token.p50_ms"]
    )
    assert summary["tpot_s"] * 1000 == pytest.approx(
        stats.percentile([m["inter_token_latency"]["value"] for m in profiling], 50)
    )
    chunks = [gap for m in profiling for gap in m["inter_chunk_latency"]["value"]]
    assert summary["itl_s_p50"] * 1000 == pytest.approx(stats.percentile(chunks, 50))


def test_vllm_failed_requests_are_rows_not_dropped():
    rows, provenance = imported(VLLM, "vllm", "vl")
    doc = json.loads(VLLM.read_text())
    assert "NOT a vLLM run" in doc["_workbench_fixture"] and provenance["version"].startswith("unknown")
    summary = summarise(rows.to_dicts())
    assert summary["requests"] == doc["completed"] + doc["failed"] and summary["ok"] == doc["completed"]
    assert summary["error_rate"] == pytest.approx(doc["failed"] / summary["requests"])
    assert summary["goodput_rps"] == pytest.approx(doc["completed"] / doc["duration"])
    assert summary["ttft_s"] * 1000 == pytest.approx(doc["median_ttft_ms"])
    assert summary["tpot_s"] * 1000 == pytest.approx(doc["median_tpot_ms"])


@pytest.mark.parametrize(
    "tool, content, expected",
    [
        ("guidellm", '{"benchmarks": []', "bad.json:1: is not JSON"),
        ("guidellm", '{"metadata": {}, "benchmarks": [{"config": {}}]}', "bad.json: benchmark 0: not GuideLLM's"),
        ("aiperf", "garbage", "bad.json:1: is not JSON"),
        ("vllm", '{"ttfts": []}', "bad.json: is not a `vllm bench serve"),
    ],
)
def test_bad_import_file_is_one_line_exit_2_nothing_written(tmp_path, tool, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = workbench("import", str(bad), "--tool", tool, "--name", "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr and str(bad) in proc.stderr
    assert not imported_store.imports_dir().exists()


def test_a_broken_aiperf_record_names_its_line(tmp_path):
    broken = tmp_path / "profile_export.jsonl"
    lines = AIPERF.read_text().splitlines()
    lines[4] = lines[4][:-40]
    broken.write_text("\n".join(lines) + "\n")
    proc = workbench("import", str(broken), "--tool", "aiperf")
    assert proc.returncode == 2 and f"{broken}:5: not an AIPerf per-request record" in proc.stderr
    assert not imported_store.imports_dir().exists()
    assert workbench("import", str(AIPERF), "--tool", "aiperf", "--name", "twice").returncode == 0
    again = workbench("import", str(AIPERF), "--tool", "aiperf", "--name", "twice")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_imports_and_a_workbench_run_at_the_same_load_share_one_section(nano_path, tmp_path):
    """nano behind mlx_lm.server at concurrency 2, 16-token prompts and 6 tokens, as the fixtures were made."""
    with server.serve(str(nano_path), log_path=tmp_path / "server.log") as served:
        frame = run_small(
            "endpoint", str(nano_path), target=served.url, served_model=served.model, levels=[2], requests=8,
            prompt_tokens=16, gen_tokens=6, in_process=False,
        )  # fmt: skip
    for path, tool, name in ((GUIDELLM, "guidellm", "gl"), (AIPERF, "aiperf", "ai")):
        importer.import_file(path, tool, name)
    section = import_section.from_rows(frame, ["gl", "ai"])
    levels = section.levels.filter((pl.col("profile") == "concurrency") & (pl.col("level") == 2))
    sources = levels["source"].to_list()
    assert sources == sorted(sources) and len(sources) == 3
    assert {s.split(" (")[0] for s in sources} == {"workbench", "GuideLLM 0.8.1", "AIPerf 0.13.0"}
    assert levels["ttft_s"].is_not_null().all() and levels["throughput_tps"].is_not_null().all()
    assert set(section.tool_figures["definitions"]) == {"GuideLLM's own", "AIPerf's own"}
    assert "imports_throughput_vs_ttft" in import_section.figures(section)
    html = import_tables.import_levels(section).as_raw_html()
    assert "GuideLLM 0.8.1 (gl)" in html and "not in file" in html


def test_fixtures_are_what_the_readme_says(tmp_path):
    readme = (FIXTURES / "README.md").read_text()
    for path in (GUIDELLM, AIPERF, VLLM):
        assert path.name in readme
    copy = tmp_path / "copy"
    shutil.copytree(FIXTURES / "aiperf-0.13.0-nano-c2", copy)
    (copy / "profile_export_aiperf.json").unlink()
    _, provenance = imported(copy / "profile_export.jsonl", "aiperf", "alone")
    assert provenance["version"].startswith("unknown") and provenance["levels"][0]["profile"] == "unknown"
