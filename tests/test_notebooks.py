"""Every notebook is committed clean and runs under papermill on the nano model."""

import json
from pathlib import Path

import polars as pl
import pytest

from workbench import experiments
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
    executed = execute_notebook(
        QUICKSTART, out, {"model": str(nano_path), "prompt_tokens": 16, "gen_tokens": 8, "trials": 1, "task_count": 4}
    )
    assert Path(executed).is_file()
    frame = pl.read_parquet(out / "results.parquet")
    assert set(frame["kind"]) == {"speed", "perplexity", "task"}
    assert frame["blas"][0] != "not loaded yet"
    nb = json.loads(Path(executed).read_text())
    assert any("vega" in json.dumps(c.get("outputs", [])) for c in nb["cells"]), "the chart was rendered"


def test_experiment_notebook_is_the_one_for_every_experiment():
    assert not [p.name for p in NOTEBOOKS if p.name[:2] in {"20", "30", "40", "50", "60", "70"}]


@pytest.mark.parametrize("experiment", experiments.names())
def test_experiment_notebook_runs_under_papermill(experiment, tmp_path, nano_path, kernel):
    from test_experiments import small_overrides

    from workbench.demo import execute_notebook

    nano = str(nano_path)
    small = {
        "model": nano,
        "prompt_tokens": 16,
        "gen_tokens": 6,
        "requests": 2,
        "trials": 1,
        "perplexity_chunks": 2,
        "task_count": 3,
        "fidelity_count": 1,
    }
    extra = small_overrides(experiment, nano)
    out = tmp_path / experiment
    parameters = {"experiment": experiment, "params_file": f"params/{experiment}.yaml", "params": {**small, **extra}}
    execute_notebook(REPO_ROOT / "notebooks" / "10_experiment.ipynb", out, parameters)
    assert pl.read_parquet(out / "results.parquet").height > 0
    nb = json.loads((out / "executed.ipynb").read_text())
    assert "vega" in json.dumps(nb["cells"][-1].get("outputs", [])), "the chart was rendered"
