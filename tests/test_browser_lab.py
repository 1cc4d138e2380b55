"""JupyterLab in a real browser with the network cut off: the charts of `00_quickstart` and `90_dashboard` draw.

JupyterLab runs on 127.0.0.1 with a token over copies of the notebooks (nano, tiny parameters; the dashboard reads the
session's finished smoke sweep, conftest.smoke_sweep_outputs). Playwright for Python drives the system Chromium (no
browser download), every request that leaves 127.0.0.1 is aborted at the page, and the test runs all cells from the
Run menu as a user would.
Then every chart must hold drawn SVG marks, and changing the dashboard's x axis must change them.
Screenshots land in `$WORKBENCH_SCREENSHOTS` (default: the test's temp folder).

    python -m pytest -q tests/test_browser_lab.py
"""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import chromium_executable

from workbench.jupyter_kernel import install_kernel
from workbench.paths import REPO_ROOT

pytest.importorskip("playwright", reason="Playwright for Python is not installed (pip install -e '.[dev]')")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT_S = 480
DATA_MARKS = "svg g.role-mark path, svg g.role-mark line, svg g.role-mark text"
QUICKSTART_PARAMETERS = (
    'model = "{model}"\nprompt_tokens = 16\ngen_tokens = 8\ntrials = 1\ntask_count = 4\nperplexity_chunks = 2\n'
    "output_dir = None"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy_notebook(name: str, target: Path, parameters: str | None = None) -> None:
    """The repository's notebook, its parameters cell replaced by `parameters` when given."""
    nb = json.loads((REPO_ROOT / "notebooks" / name).read_text())
    if parameters is not None:
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        cell["source"] = parameters.splitlines(keepends=True)
    (target / name).write_text(json.dumps(nb, indent=1))


def _make_lab_save_flag() -> str:
    """`make lab`'s pre-save hook flag, read from the Makefile (its one home)."""
    return re.search(r"^LAB_SAVE = (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)


def _wait_for_lab(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"jupyter lab did not answer {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, smoke_sweep_outputs, nano_path):
    """JupyterLab on 127.0.0.1 with a token, over copies of 00_quickstart (nano, tiny) and 90_dashboard; its
    configuration, settings and runtime files in a temp folder; kernels import this checkout."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    _copy_notebook("00_quickstart.ipynb", root, QUICKSTART_PARAMETERS.format(model=nano_path))
    _copy_notebook("90_dashboard.ipynb", root)
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell stays in the page, so off-screen charts are drawn and can be counted
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    notices = home / "settings" / "@jupyterlab" / "apputils-extension"
    notices.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the outputs
    quiet = {"fetchNews": "false", "checkForUpdates": False}
    (notices / "notification.jupyterlab-settings").write_text(json.dumps(quiet))
    # the kernel spec of its own: the shared environment's spec may be rewritten by another run meanwhile
    install_kernel(prefix=str(home / "kernel"))
    token, port = secrets.token_hex(16), _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "WORKBENCH_OUTPUTS": str(smoke_sweep_outputs),
        "JUPYTER_PATH": str(home / "kernel" / "share" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", _make_lab_save_flag()]
    command += ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    log = (home / "lab.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_lab(f"{base}/api/status?token={token}", proc)
        yield {"base": base, "token": token, "log": home / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    # neither Playwright's driver nor the browser may inherit the BLAS preload meant for MLX processes
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        playwright = sync_playwright().start()
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    try:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, env=env)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, lab: dict, name: str):
    """A page on the notebook, every request that leaves 127.0.0.1 aborted and recorded in `page.blocked`."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    blocked: list[str] = []

    def only_local(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.blocked = blocked
    # a workspace of its own, reset: only this notebook is open in the page
    page.goto(f"{lab['base']}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    ready = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"^Workbench \(MLX\) \| Idle$"))
    deadline = time.monotonic() + 360  # a kernel starting on a loaded machine stays busy a while
    while time.monotonic() < deadline and not ready.count():  # the kernel started and connected
        _no_dialog(page)
        time.sleep(0.5)
    _no_dialog(page)
    assert ready.count(), f"the workbench kernel did not become idle: {page.locator('#jp-main-statusbar').inner_text()}"
    return page


def _no_dialog(page) -> None:
    dialog = page.locator(".jp-Dialog")
    assert not dialog.count(), f"JupyterLab asks: {dialog.first.inner_text()}"


def _run_all(page, lab: dict) -> None:
    """Run > Run All Cells, then wait until every code cell has its execution count and the kernel is idle."""
    prompts = page.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputPrompt")
    for _ in range(3):  # a click while JupyterLab is still settling can be lost: retry until cells start
        _no_dialog(page)
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        started = time.monotonic() + 30
        while time.monotonic() < started and all(p.strip() == "[ ]:" for p in prompts.all_inner_texts()):
            time.sleep(0.5)
        if not all(p.strip() == "[ ]:" for p in prompts.all_inner_texts()):
            break
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        shown = prompts.all_inner_texts()
        idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
        if shown and idle and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in shown):
            break
        time.sleep(1)
    else:
        page.screenshot(path=str(lab["log"].with_suffix(".png")))
        log = lab["log"].read_text()[-2000:]
        raise AssertionError(f"cells still running after {RUN_TIMEOUT_S} s: {shown}; lab log: {log}")
    errors = page.locator('[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
    assert not errors, errors


def _marks(chart) -> list[str]:
    """Every drawn data mark of a chart: its shape and position."""
    return chart.locator(DATA_MARKS).evaluate_all(
        "els => els.map(e => [e.tagName, e.getAttribute('d'), e.getAttribute('transform'),"
        " e.getAttribute('fill'), e.textContent].join('|'))"
    )


def _wait_for_marks(chart, timeout_s: float = 60, *, unlike: list[str] | None = None) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        marks = _marks(chart)
        if marks and marks != unlike:
            return marks
        time.sleep(0.5)
    return _marks(chart)


def test_quickstart_charts_draw_with_the_network_cut_off(lab, browser, screenshots):
    page = _open(browser, lab, "00_quickstart.ipynb")
    _run_all(page, lab)
    charts = page.locator(".jp-OutputArea .workbench-chart")
    assert charts.count() == 1, "the inter-token latency histogram"
    marks = _wait_for_marks(charts.first)
    page.screenshot(path=str(screenshots / "00_quickstart.png"))
    charts.first.screenshot(path=str(screenshots / "00_quickstart_chart.png"))
    assert charts.first.locator("svg g.mark-rect.role-mark path").count() >= 1, marks
    assert "not drawn" not in charts.first.inner_text()
    assert not page.blocked, f"requests left 127.0.0.1: {page.blocked}"


def test_dashboard_chart_draws_offline_and_follows_its_controls(lab, browser, screenshots):
    page = _open(browser, lab, "90_dashboard.ipynb")
    _run_all(page, lab)
    chart = page.locator(".jp-OutputArea .vega-embed")
    assert chart.count() == 1, "one live chart"
    before = _wait_for_marks(chart.first)
    assert sum(m.startswith("path|") for m in before) >= 4, before  # a point per configuration of the sweep
    chart.first.screenshot(path=str(screenshots / "90_dashboard_before.png"))
    x_axis = page.locator(".widget-dropdown", has=page.locator("label", has_text=re.compile(r"^x$"))).locator("select")
    x_axis.select_option(label="End-to-end latency p50 (ms)")
    after = _wait_for_marks(chart.first, unlike=before)
    chart.first.screenshot(path=str(screenshots / "90_dashboard_after.png"))
    page.screenshot(path=str(screenshots / "90_dashboard.png"))
    assert after and after != before, "the marks did not change with the x axis"
    assert "End-to-end latency p50 (ms)" in chart.first.inner_text()
    assert not page.blocked, f"requests left 127.0.0.1: {page.blocked}"
