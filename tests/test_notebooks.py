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
    executed = execute_notebook(
        QUICKSTART, out, {"model": str(nano_path), "prompt_tokens": 16, "gen_tokens": 8, "trials": 1, "task_count": 4}
    )
    assert Path(executed).is_file()
    frame = pl.read_parquet(out / "results.parquet")
    assert set(frame["kind"]) == {"speed", "perplexity", "task"}
    assert frame["blas"][0] != "not loaded yet"
    nb = json.loads(Path(executed).read_text())
    assert any("vega" in json.dumps(c.get("outputs", [])) for c in nb["cells"]), "the chart was rendered"


EXPERIMENTS = {
    "quantise": {"variants": [{"bits": 4}], "kv_bits": []},
    "distill": {"student": "nano", "steps": 3},
    "batching": {"batch_sizes": [1, 2], "requests": 2, "continuous_requests": 3, "arrival_rate_rps": 50.0},
    "speculative": {"num_draft_tokens": [2], "gen_tokens": 8},
    "prompt_cache": {"prefix_tokens": 32, "requests": 2},
    "serving": {"unique_queries": 2, "requests": 4, "tiering_requests": 2},
    "tradeoff": {"bits": 4, "batch_size": 2},
}


def test_every_experiment_has_a_notebook_case():
    from workbench import experiments

    assert set(EXPERIMENTS) == set(experiments.names())


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_notebook_runs_under_papermill(experiment, tmp_path, nano_path, kernel):
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
    extra = dict(EXPERIMENTS[experiment])
    if experiment == "speculative":
        extra["draft"] = nano
    if experiment == "serving":
        extra["tiers"] = {"fast": nano, "balanced": nano, "complex": nano}
    out = tmp_path / experiment
    parameters = {"experiment": experiment, "params_file": f"params/{experiment}.yaml", "params": {**small, **extra}}
    execute_notebook(REPO_ROOT / "notebooks" / "10_experiment.ipynb", out, parameters)
    assert pl.read_parquet(out / "results.parquet").height > 0
    nb = json.loads((out / "executed.ipynb").read_text())
    assert "vega" in json.dumps(nb["cells"][-1].get("outputs", [])), "the chart was rendered"
