"""Git and notebooks stay clean: `make git-config` wires nbdime and nbstripout by absolute path, so in a fresh
clone `git diff` works without the venv on PATH and a dashboard executed in place (as JupyterLab saves it, outputs
and all) leaves `git status` clean; the committed notebooks are exactly what the filter writes."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"  # no venv on it


def _nbstripout_args() -> list[str]:
    """The filter's flags, read from the Makefile (their one home)."""
    line = re.search(r"^NBSTRIPOUT = .*?/nbstripout (.*)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert line, "Makefile defines NBSTRIPOUT"
    return shlex.split(line.group(1))


def _git(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GIT_DIR", "GIT_WORK_TREE")}
    env["PATH"] = BARE_PATH
    return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_what_the_filter_writes(path):
    """Otherwise the first save from JupyterLab would show the notebook as modified though nothing changed."""
    command = [str(Path(sys.prefix) / "bin" / "nbstripout"), "-t", *_nbstripout_args(), str(path)]
    stripped = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert stripped == path.read_text(), f"run `{shlex.join(command[:1] + command[2:])}` on it"


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of this checkout's HEAD with `make git-config` run against the test's environment."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True, timeout=120)
    venv = Path(sys.prefix)
    make = ["make", "-s", "-C", str(target), "-o", str(venv / ".setup-done"), "git-config", f"VENV={venv}"]
    subprocess.run(make, check=True, timeout=60, capture_output=True)
    return target


def test_dashboard_run_in_place_leaves_status_clean_and_diff_works_without_venv(clone, smoke_sweep_outputs, kernel):
    import nbclient
    import nbformat

    path = clone / "notebooks" / "90_dashboard.ipynb"
    nb = nbformat.read(path, as_version=4)
    saved = os.environ.get("WORKBENCH_OUTPUTS")
    os.environ["WORKBENCH_OUTPUTS"] = str(smoke_sweep_outputs)
    try:  # as JupyterLab runs it: the kernel in the notebook's folder, the outputs saved into the file
        resources = {"metadata": {"path": str(path.parent)}}
        nbclient.NotebookClient(nb, kernel_name="workbench", resources=resources, timeout=600).execute()
    finally:
        if saved is not None:
            os.environ["WORKBENCH_OUTPUTS"] = saved
    assert any(c.get("outputs") for c in nb.cells), "the run made outputs"
    # saved as JupyterLab saves under `make lab`: its contents manager with the pre-save hook
    from jupyter_server.services.contents.filemanager import FileContentsManager

    from workbench.jupyter_kernel import strip_before_save

    manager = FileContentsManager(root_dir=str(path.parent), pre_save_hook=strip_before_save)
    manager.save({"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))}, path.name)
    status = _git(clone, "status", "--porcelain")
    assert status.returncode == 0 and status.stdout == "", status.stdout + status.stderr

    nb.cells.append(nbformat.v4.new_markdown_cell("A note added in JupyterLab."))
    nbformat.write(nb, path)
    diff = _git(clone, "diff")
    assert diff.returncode == 0, diff.stderr
    assert "A note added in JupyterLab." in diff.stdout and "not found" not in diff.stderr
    assert "nbdiff" in diff.stdout, "nbdime's notebook diff, not a line diff of JSON"
