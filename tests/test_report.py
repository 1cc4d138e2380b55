"""Dashboard and report on small real sweeps: widgets driven headlessly, the report opened in headless Chromium,
its artefacts kept away from user files, names escaped, `--baseline` and `--json` exercised."""

import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import chromium_executable, run_sweep_into

from workbench import console
from workbench.paths import REPO_ROOT
from workbench.present import report
from workbench.results import integrity

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPORT = (
    "import sys; from workbench import console; from workbench.present import report; "
    "sys.exit(console.entry(report.main, sys.argv[1:]))"
)
HOSTILE = '<img src=x onerror="alert(1)">'


AA_SWEEP = {
    "name": "rounds",
    "experiment": "tradeoff",
    "fixed": {
        "model": "nano",
        "prompt_tokens": 16,
        "gen_tokens": 16,
        "requests": 4,
        "trials": 2,
        "rounds": 8,
        "perplexity_chunks": 2,
        "task_count": 8,
        "fidelity_count": 2,
    },
    # two A/A points (the baseline's settings under two seeds) and batch 4
    "points": [{"seed": 0}, {"seed": 1}, {"batch_size": 4}],
}


ENDPOINT_SWEEP = {
    "name": "served",
    "experiment": "endpoint",
    "fixed": {"model": "nano", "prompt_tokens": 16, "gen_tokens": 6, "requests": 3, "trials": 1, "timeout_s": 30},
    # mlx_lm.server restarted per point: default flags at two concurrencies; unbatched, a rate search
    "points": [
        {"profile": "concurrency", "levels": [1, 2]},
        {"profile": "saturation", "search_over": "rate", "levels": [5, 10], "server": {"decode_concurrency": 1}},
    ],
}


OTHER_MODEL_SWEEP = {  # the smoke sweep's experiment on another model, for `--baseline` like-for-like
    "name": "other-model",
    "experiment": "quantise",
    "fixed": {**yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())["fixed"], "model": "default"},
    "points": [{"variants": [{"bits": 8}]}],
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, nano_path, kernel, smoke_sweep_outputs):
    """This module's outputs folder: a copy of the session's smoke sweep, and the A/A sweep `rounds` (tradeoff on
    nano: two points with the baseline's settings and one at batch 4), the endpoint sweep `served` (nano behind
    mlx_lm.server) and `other-model` (smoke's experiment on `default`), all run for real with papermill."""
    root = tmp_path_factory.mktemp("report-outputs")
    shutil.copytree(smoke_sweep_outputs, root, dirs_exist_ok=True)
    for name, spec in (("rounds", AA_SWEEP), ("served", ENDPOINT_SWEEP), ("other-model", OTHER_MODEL_SWEEP)):
        sweep_file = root / f"{name}.yaml"
        sweep_file.write_text(yaml.safe_dump(spec))
        run_sweep_into(root, sweep_file)
    return root


@pytest.fixture
def sweep_outputs(outputs, monkeypatch):
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(outputs))
    return outputs


def test_dashboard_controls_change_chart_and_table(sweep_outputs):
    from workbench.present import dashboard

    dashboard.clear_caches()
    d = dashboard.Dashboard(["smoke", "rounds"])
    before_spec = json.dumps(d.chart.spec, sort_keys=True)
    # smoke: three points, each with its own baseline run; the baseline is one row, the median of the three
    assert d.table.value.count('<td headers="Configuration"') == 4
    assert d.table.value.count("median of 3 runs") == 1 and ">baseline<" in d.table.value
    assert "Configurations of smoke with TTFT p90 ≤ 1,000 ms" in d.table.value
    # quality against the baseline is each configuration's paired verdict on its items, with the interval
    assert "Quality vs baseline (95% CI)" in d.table.value and ">reference<" in d.table.value
    assert len(re.findall(r">(kept|worse|inconclusive) \([+−-]?[\d.]*[ a-z%]*±\d", d.table.value)) == 3, d.table.value
    assert d.chart.spec["layer"][0]["encoding"]["x"]["title"] == "TTFT p90 (ms)"
    d.x_axis.value = "e2e_s"
    assert d.chart.spec["layer"][0]["encoding"]["x"]["field"] == "e2e_s"
    d.quality.value = "perplexity"
    assert "perplexity" in json.dumps(d.chart.spec) and "Held-out perplexity ≤" in d.quality_floor.description
    d.slo_ttft.value = 1e-9  # ms; nothing is that fast
    assert "<td" not in d.table.value and "None of the 4 configurations: 4 miss TTFT p90" in d.table.value
    assert json.dumps(d.chart.spec, sort_keys=True) != before_spec
    d.baseline.value = "smoke"
    assert "Comparing smoke with itself" in d.regressions.value
    d.baseline.value = "rounds"
    assert "Regressions of smoke against rounds" in d.regressions.value
    assert "hollow black diamonds: rounds" in json.dumps(d.chart.spec, ensure_ascii=False)


def test_dashboard_quality_floor_is_typed_in_the_tables_unit(sweep_outputs):
    from workbench.present import dashboard

    dashboard.clear_caches()
    d = dashboard.Dashboard(["smoke"])
    assert d.quality_floor.description == "quality floor: Task exact match ≥ (%)"
    best = max(d.meeting_slo()["task_accuracy"].drop_nulls().to_list())
    d.quality_floor.value = 100 * best - 1e-6  # the best exact match, in percent as the table shows it
    assert d.slo()["task_accuracy_min"] == pytest.approx(best)
    kept = d.meeting_slo()["task_accuracy"].to_list()
    assert kept and min(kept) == pytest.approx(best), kept
    d.quality_floor.value = 100 * best + 1
    assert "miss Task exact match ≥" in d.table.value


def test_dashboard_shows_an_endpoint_sweep_by_load_level(sweep_outputs):
    from workbench.present import dashboard

    dashboard.clear_caches()
    d = dashboard.Dashboard(["served", "smoke"])
    assert "Throughput against TTFT p90" in json.dumps(d.chart.spec)
    hidden = [c.description for c in (d.quality, d.quality_floor, d.x_axis, d.y_axis) if c.layout.display == "none"]
    assert len(hidden) == 4, hidden
    assert "misses SLOs" not in d.table.value and "over-saturated" not in d.table.value
    assert "that met their run's own SLOs" in d.heading.value
    section = dashboard._endpoint("served")
    for name in set(section.levels["configuration"].drop_nulls()):
        assert d.table.value.count(f">{name}<") <= 1, f"{name} is one group heading, not a cell per level"
    d.slo_ttft.value = 1e-9
    assert "None of the" in d.table.value
    d.baseline.value = "smoke"
    assert "different kinds of sweep" in d.regressions.value
    d.sweep.value = "smoke"
    assert d.quality.layout.display is None, "shown again for a tradeoff sweep"


def test_dashboard_notebook_runs_under_papermill(sweep_outputs, tmp_path):
    from workbench.demo import execute_notebook

    executed = execute_notebook(
        REPO_ROOT / "notebooks" / "90_dashboard.ipynb", tmp_path / "dash", {"sweeps": ["smoke"]}
    )
    text = Path(executed).read_text()
    assert "application/vnd.jupyter.widget-view+json" in text
    table = json.loads(text)["cells"][-1]["outputs"][0]["data"]["text/html"]  # formatted, not a frame's repr
    assert "gt_table" in "".join(table) and "shape: (" not in "".join(table)


def _browser(*args, tmp_path: Path, name: str) -> str:
    # the browser must not inherit the BLAS preload meant for MLX processes (its GPU process dies on it)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    flags = [*CHROMIUM_FLAGS, "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / name}"]
    return subprocess.run(
        [chromium_executable(), *flags, *args], capture_output=True, text=True, timeout=120, env=env
    ).stdout


def _png_is_blank(path: Path) -> bool:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return sum(b != 0 for b in raw) / len(raw) < 0.01  # filtered rows of one colour are all zeros


def test_report_on_interleaved_rounds_opens_offline_with_drawn_charts(sweep_outputs, tmp_path):
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, "-c", REPORT, "rounds", "--endpoint", "served", "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WORKBENCH_OUTPUTS": str(sweep_outputs)},
    )
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)  # with --json, stdout is exactly one JSON document; the paths go to stderr
    assert f"report:    {out}" in proc.stderr
    assert verdict["noise_floor"]["known"] and verdict["noise_floor"]["metrics"]["throughput_tps"]["runs"] == 3
    batch = [r for r in verdict["recommendations"] if r["variant"] == "fp-b4"]
    assert batch and batch[0]["verdict"] == "better" and batch[0]["change_pct"] > 0, verdict  # 4 requests at once
    assert batch[0]["half_width_pct"] > 0 and isinstance(batch[0]["costs"], list)
    assert all(r["variant"] != "fp-b1-aa" for r in verdict["recommendations"])
    aa = [c for c in verdict["aa_checks"] if c["variant"] == "fp-b1-aa"]
    assert len({c["point_id"] for c in aa}) == 2 and not any(c["flagged"] for c in aa), aa
    entries = [c for c in verdict["comparisons"] if c["kind"] == "speed"]
    assert len(entries) == 3 * 4 and all(c["rounds"] == 8 for c in entries)  # 3 points x 4 metrics, 8 rounds each
    assert {c["verdict"] for c in entries} <= {"better", "worse", "equivalent", "inconclusive"}
    page = out.read_text()
    assert "vegaEmbed" in page and 'src="http' not in page and "Recommendations" in page
    assert "workbench/nano" in page and "M parameters" in page  # the header: the model,
    assert "16 prompt + 16 output tokens" in page and "interleaved rounds" in page  # the workload and timing
    assert not re.search(r"@ [0-9a-f]{12}", page), "configuration names carry no '@ <point id>'"
    assert "baseline (A/A copy)" in page, "the A/A copies by name"
    assert "batch 4" in page, "fp-b4 by what it changes"
    assert re.search(r"SLO: the endpoint sweep.{1,6}s own \(", page), "the endpoint SLO's source"
    assert verdict["headline"] and "@" not in verdict["headline"]
    assert "workbench/nano" in verdict["header"]["Model"]
    assert "shape: (" not in page and "A/A check" in page and "All configurations" in page
    assert "host_hash" not in page and "Machine" in page  # the fingerprint by its id, not a dict's repr
    assert "no significant difference" not in page
    served = verdict["endpoint"]
    assert {(r["profile"], r["level"]) for r in served["levels"]} == {("concurrency", 1), ("concurrency", 2)} | {
        ("rate", 5),
        ("rate", 10),
    }
    assert all(r["error_rate"] == 0 and r["generated_tokens_min"] == 6 for r in served["levels"])
    assert {r["side"] for r in served["cold_start"]} == {"served", "in process"}
    assert {r["metric"] for r in served["served_vs_in_process"]} == {"throughput_tps", "ttft_s", "e2e_s"}
    assert "Served endpoint" in out.read_text() and "Launch to ready" in out.read_text()
    assert sorted(p.name for p in (tmp_path / "report_files" / "charts").glob("*.png")) == [
        "endpoint_goodput.png",
        "endpoint_throughput_vs_ttft.png",
        "latency_cdf.png",
        "memory.png",
        "quality_vs_speed.png",
        "tradeoff.png",
    ]
    assert not (tmp_path / "report.ipynb").exists()

    dom = _browser("--dump-dom", out.as_uri(), tmp_path=tmp_path, name="p1")
    assert dom.count('class="mark-symbol') >= 3, "scatter points were drawn"
    assert dom.count('class="mark-line') >= 1 and dom.count("<svg") >= 4
    assert "shape: (" not in dom and "TTFT p90 (ms)" in dom
    shot = tmp_path / "report.png"
    _browser("--window-size=1280,2000", f"--screenshot={shot}", out.as_uri(), tmp_path=tmp_path, name="p2")
    assert shot.exists() and not _png_is_blank(shot)


def test_report_against_an_earlier_sweep_keeps_user_files(sweep_outputs, tmp_path, capsys):
    mine = tmp_path / "x.ipynb"
    mine.write_text("my notebook")
    assert report.main(["smoke", "--baseline", "smoke", "-o", str(tmp_path / "x.html"), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["regressions"]["compared"] > 0 and verdict["regressions"]["found"] == []  # a sweep vs itself
    assert set(verdict) >= {"recommendations", "noise_floor", "slo", "regressions"}
    assert verdict["noise_floor"]["known"]  # every experiment measures its baseline in two rounds or more
    assert mine.read_text() == "my notebook"
    assert (tmp_path / "x_files" / "report.ipynb").is_file() and (tmp_path / "x_files" / "summary.json").is_file()
    assert "Against sweep smoke" in (tmp_path / "x.html").read_text()
    assert report.main(["smoke", "-o", str(tmp_path / "x.html")]) == 0  # an earlier report may be replaced

    refused = [
        ["-o", str(mine)],  # not HTML
        ["-o", str(REPO_ROOT / "notebooks" / "99_report.html")],
        ["-o", str(tmp_path / "notes.html")],
        ["-o", str(tmp_path / "y.html")],
    ]
    (tmp_path / "notes.html").write_text("<p>my notes</p>")
    (tmp_path / "y_files").mkdir()
    for args in refused:
        assert console.entry(report.main, ["smoke", *args]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (tmp_path / "notes.html").read_text() == "<p>my notes</p>" and not list((tmp_path / "y_files").iterdir())
    assert not (REPO_ROOT / "notebooks" / "99_report_files").exists()


def test_report_escapes_names_from_the_rows(sweep_outputs, tmp_path):
    source = next((sweep_outputs / "sweeps" / "smoke").glob("*/results.parquet")).parent
    target = sweep_outputs / "sweeps" / "hostile" / source.name
    shutil.copytree(source, target)
    rows = pl.read_parquet(target / "results.parquet")
    rows = rows.with_columns(
        variant=pl.when(pl.col("variant") == "baseline").then(pl.col("variant")).otherwise(pl.lit(HOSTILE)),
        model_id=pl.lit(HOSTILE),
        # names are built from what a variant declares it changes: a hostile declaration reaches the page too
        changes_json=pl.when(pl.col("variant") == "baseline")
        .then(pl.col("changes_json"))
        .otherwise(pl.lit(json.dumps({"bits": 8, "recipe": HOSTILE}))),
    )
    rows.write_parquet(target / "results.parquet")
    integrity.write_manifest(target, rows.height, (target / "results.parquet").read_bytes())
    out = tmp_path / "hostile.html"
    assert report.main(["hostile", "-o", str(out)]) == 0
    page = out.read_text()
    assert "&lt;img src=x" in page  # shown, as text
    assert "<img src=x" not in page and '<img src="x"' not in page
    dom = _browser("--dump-dom", out.as_uri(), tmp_path=tmp_path, name="p3")
    assert not re.search(r"<img[^>]*alert\(1\)", dom)  # no live element made of a name


def test_report_bad_input_is_one_line(sweep_outputs, tmp_path, capsys):
    for args in (
        ["nosuch"],
        ["../smoke"],
        [HOSTILE],
        ["smoke", "--slo", str(tmp_path / "missing.yaml")],
        ["smoke", "--tolerance", "2"],
        ["smoke", "--baseline", "nosuch"],
        ["smoke", "--endpoint", "nosuch"],
    ):
        assert console.entry(report.main, args) == 2, args
        assert len(capsys.readouterr().err.strip().splitlines()) == 1, args
    (tmp_path / "slo.yaml").write_text("ttft_s_p90_max: soon\n")
    assert console.entry(report.main, ["smoke", "--slo", str(tmp_path / "slo.yaml")]) == 2
    assert "ttft_s_p90_max" in capsys.readouterr().err


def test_report_places_imported_tool_results_next_to_the_endpoint_sweep(sweep_outputs, tmp_path):
    """The real GuideLLM and AIPerf files (nano behind mlx_lm.server, concurrency 2, 16 -> 6 tokens) next to the
    `served` endpoint sweep's levels (the same model and lengths, concurrency 1 and 2) in one rendered report."""
    from workbench.imports import importer

    fixtures = Path(__file__).parent / "fixtures" / "imports"
    importer.import_file(fixtures / "guidellm-0.8.1-nano-c2.json", "guidellm", "gl-c2")
    importer.import_file(fixtures / "aiperf-0.13.0-nano-c2" / "profile_export.jsonl", "aiperf", "ai-c2")
    out = tmp_path / "report.html"
    args = ["rounds", "--endpoint", "served", "--compare-import", "gl-c2", "--compare-import", "ai-c2"]
    proc = subprocess.run(
        [sys.executable, "-c", REPORT, *args, "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WORKBENCH_OUTPUTS": str(sweep_outputs)},
    )
    assert proc.returncode == 0, proc.stderr
    imports = json.loads(proc.stdout.strip().splitlines()[-1])["imports"]
    at_c2 = {r["source"].split(" (")[0] for r in imports["levels"] if (r["profile"], r["level"]) == ("concurrency", 2)}
    assert at_c2 == {"workbench", "GuideLLM 0.8.1", "AIPerf 0.13.0"}
    page = out.read_text()
    assert "Other tools&#x27; results" in page or "Other tools' results" in page
    assert "GuideLLM 0.8.1 (gl-c2)" in page and "time_per_output_token_ms.median" in page
    assert (report.artefacts_dir(out) / "charts" / "imports_throughput_vs_ttft.png").is_file()
    missing = subprocess.run(
        [sys.executable, "-c", REPORT, "rounds", "--compare-import", "nosuch", "-o", str(tmp_path / "x.html")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "WORKBENCH_OUTPUTS": str(sweep_outputs)},
    )  # fmt: skip
    assert missing.returncode == 2 and "import 'nosuch'" in missing.stderr and not (tmp_path / "x.html").exists()


def test_baseline_of_another_model_is_refused_and_unlike_configurations_left_out(sweep_outputs, tmp_path, capsys):
    assert console.entry(report.main, ["smoke", "--baseline", "other-model", "-o", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing in it is comparable with this sweep" in err[0] and "model differs" in err[0]
    assert "workbench/nano" in err[0] and "workbench/default" in err[0]

    from workbench.analysis.like_for_like import match_baseline

    smoke = report.load("smoke")[0]
    other = report.load("other-model")[0]
    first, second = sorted(smoke["point_id"].unique())[:2]
    # an earlier sweep whose point `second` measured the other model (its real rows under that point id)
    mixed = pl.concat(
        [smoke.filter(pl.col("point_id") != second), other.with_columns(point_id=pl.lit(second))], how="diagonal"
    )
    found = match_baseline(smoke, mixed)
    assert found.comparable and found.keys == ("point_id", "variant")
    assert set(found.previous["point_id"]) == set(smoke["point_id"]) - {second}
    assert found.left_out and all(f"(point {second[:8]}): model differs" in line for line in found.left_out)
