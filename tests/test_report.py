"""Dashboard and report on a small real sweep: widgets driven headlessly, the report opened in headless Chromium."""

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from workbench.paths import REPO_ROOT

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


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory, nano_path, kernel):
    """The smoke sweep, run once into this module's own outputs folder."""
    import os

    from workbench import sweep

    outputs = tmp_path_factory.mktemp("report-outputs")
    saved = os.environ.get("WORKBENCH_OUTPUTS")
    os.environ["WORKBENCH_OUTPUTS"] = str(outputs)
    try:
        outcomes = sweep.run_sweep(sweep.load_sweep(REPO_ROOT / "params" / "smoke.yaml"), workers=2, progress=False)
    finally:
        if saved is not None:
            os.environ["WORKBENCH_OUTPUTS"] = saved
    assert all(o["status"] == "done" for o in outcomes)
    return outputs


@pytest.fixture
def sweep_outputs(smoke_sweep, monkeypatch):
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(smoke_sweep))
    return smoke_sweep


def test_pareto_mask_keeps_only_undominated_rows():
    import polars as pl

    from workbench import analysis

    df = pl.DataFrame(
        {
            "ttft_s_p90": [1.0, 2.0, 1.0, 3.0],
            "throughput_tps": [10.0, 20.0, 5.0, 20.0],
            "task_accuracy": [0.5, 0.5, 0.5, 0.4],
        }
    )
    assert analysis.pareto_mask(df, {"ttft_s_p90": False, "throughput_tps": True, "task_accuracy": True}) == [
        True,
        True,
        False,
        False,
    ]


def test_dashboard_controls_change_chart_and_table(sweep_outputs):
    from workbench import dashboard

    dashboard._configs.cache_clear()
    d = dashboard.Dashboard()
    before_spec = json.dumps(d.chart.spec, sort_keys=True)
    before_rows = d.table.value.count("<tr>")
    assert before_rows > 1
    d.x_axis.value = "e2e_s"
    assert d.chart.spec["layer"][0]["encoding"]["x"]["field"] == "e2e_s"
    d.quality.value = "perplexity"
    assert "perplexity" in json.dumps(d.chart.spec)
    d.slo_ttft.value = 1e-9  # nothing is that fast
    assert d.table.value.count("<tr>") == 0 and "none" in d.table.value
    assert json.dumps(d.chart.spec, sort_keys=True) != before_spec
    d.baseline.value = "smoke"
    assert "Regressions" in d.regressions.value


def test_dashboard_notebook_runs_under_papermill(sweep_outputs, tmp_path):
    from workbench.demo import execute_notebook

    executed = execute_notebook(
        REPO_ROOT / "notebooks" / "90_dashboard.ipynb", tmp_path / "dash", {"sweeps": ["smoke"]}
    )
    assert "application/vnd.jupyter.widget-view+json" in Path(executed).read_text()


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") and hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("headless Chromium is not installed and could not be installed (apt-get install chromium)")
    return found


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


def test_report_opens_offline_with_drawn_charts(sweep_outputs, tmp_path):
    proc = subprocess.run(
        [
            str(REPO_ROOT / ".venv/bin/workbench") if (REPO_ROOT / ".venv/bin/workbench").exists() else "workbench",
            "report",
            "smoke",
            "-o",
            str(tmp_path / "report.html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "WORKBENCH_OUTPUTS": str(sweep_outputs)},
    )
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report.html").read_text()
    assert "vegaEmbed" in html and 'src="http' not in html and "Recommendations" in html
    assert len(list((tmp_path / "report_charts").glob("*.png"))) == 4

    chromium = _chromium()
    flags = [*CHROMIUM_FLAGS, "--virtual-time-budget=10000"]
    # the browser must not inherit the BLAS preload meant for MLX processes (its GPU process dies on it)
    browser_env = {k: v for k, v in __import__("os").environ.items() if k != "LD_PRELOAD"}
    dom = subprocess.run(
        [chromium, *flags, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", (tmp_path / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env=browser_env,
    ).stdout
    assert dom.count('class="mark-symbol') >= 3, "scatter points were drawn"
    assert dom.count('class="mark-line') >= 1 and dom.count("<svg") >= 4
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *flags,
            f"--user-data-dir={tmp_path / 'p2'}",
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        env=browser_env,
    )
    assert shot.exists() and not _png_is_blank(shot)


def test_report_bad_input(tmp_path, sweep_outputs):
    import os

    env = {**os.environ, "WORKBENCH_OUTPUTS": str(sweep_outputs)}
    for args in (["report", "nosuch"], ["report", "smoke", "--slo", str(tmp_path / "missing.yaml")]):
        proc = subprocess.run(
            [__import__("sys").executable, "-m", "workbench.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
