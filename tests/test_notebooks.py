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


def test_experiment_notebook_is_the_one_for_every_experiment():
    assert not [p.name for p in NOTEBOOKS if p.name[:2] in {"20", "30", "40", "50", "60", "70"}]


# The notebook's cells are the same for every experiment (test_experiments checks each experiment's table and
# chart in process); under papermill it runs for the served experiment (its own server) here, and for an
# in-process one (tradeoff) from the notebooks folder below, with the same checks and more.
@pytest.mark.parametrize("experiment", ["endpoint"])
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


def _execute_from_notebooks_folder(name: str, out: Path, parameters: dict) -> Path:
    """As `make lab` runs them: the kernel's working directory is `notebooks/`, not the repository root."""
    import papermill

    from workbench.jupyter_kernel import KERNEL_NAME

    out.mkdir(parents=True, exist_ok=True)
    executed = out / "executed.ipynb"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / name),
        str(executed),
        parameters=parameters,
        kernel_name=KERNEL_NAME,
        cwd=str(REPO_ROOT / "notebooks"),
        progress_bar=False,
        execution_timeout=600,
    )
    return executed


def test_experiment_notebook_finds_params_and_eval_set_from_the_notebooks_folder(tmp_path, nano_path, kernel):
    """`params/tradeoff.yaml` and a relative eval set resolve from the repository root, as in sweeps."""
    small = {
        "model": str(nano_path),
        "prompt_tokens": 16,
        "gen_tokens": 6,
        "requests": 2,
        "trials": 1,
        "perplexity_chunks": 2,
        "eval_set": "workbench/workloads/data/facts_heldout.jsonl",
        "task_count": 3,
        "fidelity_count": 1,
        "batch_size": 2,
    }
    out = tmp_path / "experiment"
    parameters = {"experiment": "tradeoff", "params_file": "params/tradeoff.yaml", "params": small}
    executed = _execute_from_notebooks_folder("10_experiment.ipynb", out, {**parameters, "output_dir": str(out)})
    frame = pl.read_parquet(out / "results.parquet")
    assert {"speed", "task"} <= set(frame["kind"])
    nb = json.loads(executed.read_text())
    assert "vegaEmbed" in json.dumps(nb["cells"][-1].get("outputs", [])), "the chart was rendered offline"


def test_endpoint_notebook_runs_from_the_notebooks_folder(tmp_path, nano_path, kernel):
    """80_endpoint on nano with its default `params/endpoint.yaml`, kernel in `notebooks/`: both runs
    (concurrencies, rate search) and every table and chart."""
    small = {"requests": 2, "gen_tokens": 6, "prompt_tokens": 16, "timeout_s": 30}
    parameters = {"model": str(nano_path), "concurrencies": [1, 2], "rates": [5, 10], "params": small}
    executed = _execute_from_notebooks_folder("80_endpoint.ipynb", tmp_path / "endpoint", parameters)
    text = executed.read_text()
    outputs = json.dumps([c.get("outputs", []) for c in json.loads(text)["cells"]])
    assert outputs.count("vegaEmbed(") == 2, "both charts rendered offline"
    assert "cdn.jsdelivr" not in outputs and "esm.sh" not in outputs
    assert "Highest level meeting the SLOs" in text and "Launch to ready" in text and "Traceback" not in text
