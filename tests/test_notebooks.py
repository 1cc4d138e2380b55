"""Every notebook is committed clean and runs under papermill on the nano model."""

import json
from pathlib import Path

import polars as pl
import pytest

from workbench.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_clean_and_thin(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs") and cell.get("execution_count") is None, "notebook carries outputs"
        source = "".join(cell["source"])
        defines = any(line.startswith(("def ", "class ")) for line in source.splitlines())
        assert not defines, "logic belongs in workbench/"


def test_quickstart_runs_under_papermill(tmp_path, nano_path, kernel):
    from workbench.demo import QUICKSTART, execute_notebook

    out = tmp_path / "demo"
    executed = execute_notebook(QUICKSTART, out, {"model": str(nano_path), "prompt_tokens": 16, "gen_tokens": 8,
                                                  "trials": 1, "task_count": 4})
    assert Path(executed).is_file()
    frame = pl.read_parquet(out / "results.parquet")
    assert set(frame["kind"]) == {"speed", "perplexity", "task"}
    assert frame["blas"][0] != "not loaded yet"
    nb = json.loads(Path(executed).read_text())
    assert any("vega" in json.dumps(c.get("outputs", [])) for c in nb["cells"]), "the chart was rendered"
