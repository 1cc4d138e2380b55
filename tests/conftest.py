"""Tests run on the `nano` preset with real MLX, with the optimised BLAS preloaded like every workbench process."""

import os
from pathlib import Path

import pytest

from workbench import runtime
from workbench.paths import REPO_ROOT

os.environ.setdefault("WORKBENCH_CACHE", str(REPO_ROOT / "outputs" / "cache"))


def pytest_configure(config):
    """Re-execute pytest once with the optimised BLAS preloaded (Linux), before any test imports MLX."""
    if runtime.needs_reexec():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        runtime.ensure_optimised_blas()


@pytest.fixture(autouse=True)
def _outputs(tmp_path, monkeypatch):
    """Every test writes its results into its own folder, never into outputs/."""
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


@pytest.fixture(scope="session")
def nano_path() -> Path:
    from workbench.models import build

    return build.build_model("nano", progress=False)


@pytest.fixture(scope="session")
def nano(nano_path):
    from workbench.models import loader

    return loader.load(str(nano_path))


@pytest.fixture(scope="session")
def kernel():
    from workbench.jupyter_kernel import install_kernel

    return install_kernel()


def copy_with_chat_template(source: Path, target: Path, template: str) -> Path:
    """A model directory copied from `source` with `template` as the chat template in tokenizer_config.json."""
    import json
    import shutil

    shutil.copytree(source, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    (target / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    return target


@pytest.fixture(scope="module")
def other_tokenizer(nano_path, tmp_path_factory):
    """nano with two vocabulary entries swapped: same vocabulary size, another tokenizer."""
    import json
    import shutil

    target = tmp_path_factory.mktemp("tok") / "nano-swapped"
    shutil.copytree(nano_path, target)
    spec = json.loads((target / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = (token for token, index in vocab.items() if index in (300, 301))
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (target / "tokenizer.json").write_text(json.dumps(spec))
    return target


def run_sweep_into(root: Path, sweep_file: Path) -> None:
    """Run `sweep_file` for real (papermill, one point after another) into the outputs folder `root`, recording
    the file in sweep.json as `workbench sweep` does; every point must finish."""
    from workbench.sweep import runner

    saved = os.environ.get("WORKBENCH_OUTPUTS")
    os.environ["WORKBENCH_OUTPUTS"] = str(root)
    try:
        plan = runner.load_sweep(sweep_file)
        plan.root.mkdir(parents=True, exist_ok=True)
        runner.record_sweep_file(plan)
        outcomes = runner.run_sweep(plan, runner.ExecutionOptions(progress=False))
        assert all(o.status is runner.PointStatus.DONE for o in outcomes), outcomes
    finally:
        if saved is None:
            os.environ.pop("WORKBENCH_OUTPUTS", None)
        else:
            os.environ["WORKBENCH_OUTPUTS"] = saved


@pytest.fixture(scope="session")
def smoke_sweep_outputs(tmp_path_factory, nano_path, kernel) -> Path:
    """An outputs folder holding `params/smoke.yaml` run once for real with papermill (three quantise points on
    nano), shared by the tests that read a finished sweep (the dashboard, the report, the docs' snippets, the
    attacks on its files). Read-only: a test that changes it works on a copy (`shutil.copytree`)."""
    root = tmp_path_factory.mktemp("smoke-outputs")
    run_sweep_into(root, REPO_ROOT / "params" / "smoke.yaml")
    return root


def chromium_executable() -> str:
    """The system Chromium (`apt-get install chromium`, tried here when root); the test is skipped without it."""
    import shutil
    import subprocess

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        for step in (["apt-get", "install", "-y", "-qq", "chromium"], ["apt-get", "update", "-qq"]) * 2:
            if shutil.which("chromium"):
                break
            subprocess.run(step, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("headless Chromium is not installed and could not be installed (apt-get install chromium)")
    return found
