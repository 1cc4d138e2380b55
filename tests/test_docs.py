"""Every ```python block in docs/ and the README runs as written (on nano, against a finished smoke sweep's run),
so a snippet cannot drift from the code it shows."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from workbench.paths import REPO_ROOT

PAGES = [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]
SNIPPETS = [
    (page, page.read_text()[: match.start()].count("\n") + 1, match.group(1))
    for page in PAGES
    for match in re.finditer(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
]


def test_docs_have_python_snippets():
    assert len(SNIPPETS) >= 3, [f"{p.name}:{line}" for p, line, _ in SNIPPETS]


@pytest.mark.parametrize("page,line,code", SNIPPETS, ids=[f"{p.name}:{line}" for p, line, _ in SNIPPETS])
def test_docs_snippet_runs(page, line, code, tmp_path, smoke_sweep_outputs):
    """In a fresh folder with one finished run under outputs/runs (a point of the smoke sweep, copied)."""
    point = next((smoke_sweep_outputs / "sweeps" / "smoke").glob("*/results.parquet")).parent
    shutil.copytree(point, tmp_path / "outputs" / "runs" / point.name)
    env = {
        **os.environ,
        "WORKBENCH_OUTPUTS": str(tmp_path / "outputs"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{page.name}:{line}:\n{proc.stderr[-3000:]}"
