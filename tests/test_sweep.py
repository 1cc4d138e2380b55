"""Sweeps through real papermill on the nano model: expansion, validation, resume, kill, Dask."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
import yaml

from workbench.errors import UsageError
from workbench.paths import REPO_ROOT
from workbench.results import store
from workbench.sweep import outcome, runner
from workbench.sweep.outcome import PointOutcome, PointStatus

SMOKE = REPO_ROOT / "params" / "smoke.yaml"
# smoke's experiment with the least work per point, for tests of control flow (no number of theirs is shown)
QUICK = {
    **yaml.safe_load(SMOKE.read_text())["fixed"],
    **{"prompt_tokens": 8, "gen_tokens": 4, "perplexity_chunks": 0, "task_count": 0, "fidelity_count": 0},
}


def write_sweep(tmp_path, sweep_name, **changes):
    spec = yaml.safe_load(SMOKE.read_text())
    spec["name"] = sweep_name
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    path = tmp_path / f"{sweep_name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli(*args, outputs):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_grid_expansion_and_stable_ids():
    points = runner.expand({"model": "nano"}, {"b": [1, 2], "a": ["x", "y", "z"]}, None)
    assert len(points) == 6 and all(p["model"] == "nano" for p in points)
    assert runner.point_id({"a": 1, "b": [1, 2]}) == runner.point_id({"b": [1, 2], "a": 1})
    assert runner.point_id({"a": 1}) != runner.point_id({"a": 2})
    assert runner.expand({"m": 1}, None, [{"a": 1}, {"a": 2}]) == [{"m": 1, "a": 1}, {"m": 1, "a": 2}]
    plan = runner.load_sweep(SMOKE)
    assert len(plan.points) >= 3 and len({p.point_id for p in plan.points}) == len(plan.points)
    assert [p.point_id for p in runner.load_sweep(SMOKE).points] == [p.point_id for p in plan.points]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, ":colour: Extra inputs are not permitted"),
        ({"experiment": "teleport"}, ":experiment: must be one of"),
        ({"grid": {"variants": [[{"bits": 7}]]}}, ":variants.0.bits:"),
        ({"grid": {"trials": [0]}}, ":trials:"),
        ({"experiment": "batching"}, ":kv_bits: Extra inputs"),
        ({"name": "../../x"}, ":name:"),
        ({"grid": {"seed": list(range(200)), "trials": list(range(1, 101))}}, ":grid: more than"),
        ({"grid": {"trials": [1, "two"]}}, ":trials:"),
        ({"fixed": {"model": "/no/such/model"}}, ":model:"),
        ({"timeout_s": 0}, ":timeout_s:"),
        ({"grid": {"trials": []}}, ":grid:"),
        ({"points": [{"trials": 1}]}, ":grid: give either"),
    ],
)
def test_bad_sweep_files_exit_2_and_write_nothing(tmp_path, changes, message):
    path = write_sweep(tmp_path, "bad", **changes)
    outputs = tmp_path / "outputs"
    proc = cli("sweep", str(path), outputs=outputs)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and f"{path}" in line and message in line, line
    assert not outputs.exists()


def test_smoke_sweep_prepare_run_resume_and_load(tmp_path, nano_path, kernel, _outputs):
    proc = cli("sweep", str(SMOKE), "--prepare-only", outputs=_outputs)
    assert proc.returncode == 0, proc.stderr
    assert len(list((_outputs / "sweeps" / "smoke").glob("*/prepared.ipynb"))) == 3
    assert not list((_outputs / "sweeps" / "smoke").glob("*/results.parquet"))

    proc = cli("sweep", str(SMOKE), "--workers", "2", "--json", outputs=_outputs)
    assert proc.returncode == 0, proc.stderr
    assert '"ran": 3' in proc.stdout.splitlines()[-1]
    root = _outputs / "sweeps" / "smoke"
    assert {p.name for p in root.iterdir() if not p.is_dir()} <= {"sweep.json", ".lock"}
    for point in (p for p in root.iterdir() if p.is_dir()):
        assert {"point.yaml", "params.yaml", "env.json", "results.parquet", "manifest.json", "executed.ipynb"} <= {
            p.name for p in point.iterdir()
        }

    proc = cli("sweep", str(SMOKE), "--json", outputs=_outputs)
    assert '"ran": 0' in proc.stdout.splitlines()[-1] and '"skipped": 3' in proc.stdout.splitlines()[-1]

    frame = store.load_sweep_results("smoke").collect()
    assert frame["point_id"].n_unique() == 3
    assert "param_variants" in frame.columns and frame["param_variants"].n_unique() == 3
    assert "smoke" in cli("sweeps", outputs=_outputs).stdout


def test_failed_point_is_recorded_the_sweep_goes_on_and_a_rerun_completes_it(tmp_path, nano_path, kernel, _outputs):
    broken = tmp_path / "broken-model"
    shutil.copytree(nano_path, broken)
    weights = (broken / "model.safetensors").read_bytes()
    points = [{"model": str(nano_path)}, {"model": str(broken)}]
    path = write_sweep(tmp_path, "flaky", fixed=QUICK, grid=None, points=points)
    (broken / "model.safetensors").write_bytes(b"garbage")
    proc = cli("sweep", str(path), "--retries", "0", "--json", outputs=_outputs)
    assert proc.returncode == 1
    assert '"failed": 1' in proc.stdout.splitlines()[-1]
    errors = list((_outputs / "sweeps" / "flaky").glob("*/error.json"))
    assert len(errors) == 1 and "executed_notebook" in errors[0].read_text()

    (broken / "model.safetensors").write_bytes(weights)
    proc = cli("sweep", str(path), "--json", outputs=_outputs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert '"ran": 1' in last and '"skipped": 1' in last
    assert not list((_outputs / "sweeps" / "flaky").glob("*/error.json"))


def test_killed_sweep_resumes_without_lost_or_duplicated_rows(tmp_path, nano_path, kernel, _outputs):
    path = write_sweep(tmp_path, "killed", fixed=QUICK)
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(_outputs)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "sweep", str(path), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    root = _outputs / "sweeps" / "killed"
    deadline = time.time() + 240
    while time.time() < deadline and not list(root.glob("*/results.parquet")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.parent.name for p in root.glob("*/results.parquet")}
    assert 1 <= len(finished_before) < 3
    for parquet in root.glob("*/results.parquet"):
        pl.read_parquet(parquet)  # every file a reader sees as finished is complete

    done = cli("sweep", str(path), "--json", outputs=_outputs)
    assert done.returncode == 0, done.stderr
    assert f'"skipped": {len(finished_before)}' in done.stdout.splitlines()[-1]
    frame = store.load_sweep_results("killed").collect()
    assert frame["point_id"].n_unique() == 3
    per_point = frame.group_by("point_id").agg(pl.col("run_id").n_unique().alias("runs"))
    assert per_point["runs"].to_list() == [1, 1, 1]


def test_dask_executor_with_a_local_cluster_and_rerun(tmp_path, nano_path, kernel, _outputs):
    path = write_sweep(tmp_path, "dasky", fixed=QUICK, grid={"variants": [[{"bits": 4}], [{"bits": 8}]]})
    plan = runner.load_sweep(path)
    options = runner.ExecutionOptions(executor="dask", progress=False)
    outcomes = runner.run_sweep(plan, options)
    assert sorted(o.status for o in outcomes) == ["done", "done"]
    assert store.load_sweep_results("dasky").collect()["point_id"].n_unique() == 2

    first, second = (p.point_id for p in plan.points)
    before = (plan.root / first / "results.parquet").read_bytes()
    again = runner.run_sweep(plan, dataclasses.replace(options, rerun=frozenset({first})))
    assert {o.point_id: o.status for o in again} == {first: PointStatus.DONE, second: PointStatus.SKIPPED}
    (kept,) = (plan.root / first / ".replaced").iterdir()  # the earlier measurement, set aside, not overwritten
    assert (kept / "results.parquet").read_bytes() == before and (kept / "manifest.json").is_file()
    assert (plan.root / first / "results.parquet").read_bytes() != before
    frame = store.load_sweep_results("dasky").collect()
    assert frame.group_by("point_id").agg(pl.col("run_id").n_unique())["run_id"].to_list() == [1, 1]


def test_outcomes_print_as_before():
    failed = PointOutcome("p1", PointStatus.FAILED, error="E: x", executed_notebook="/nb")
    on_worker = PointOutcome("p2", PointStatus.FAILED, error="E: y", on_cluster=True, rerun_because="bad sha")
    assert json.dumps([failed.as_dict(), on_worker.as_dict()]) == (
        '[{"point_id": "p1", "status": "failed", "error": "E: x", "executed_notebook": "/nb"}, '
        '{"point_id": "p2", "worker": null, "status": "failed", "error": "E: y", "executed_notebook": null, '
        '"rerun": "bad sha"}]'
    )
    assert PointStatus("done") is PointStatus.DONE and f"{PointStatus.REMAINING}" == "remaining"
    assert json.dumps({"status": PointStatus.SKIPPED}) == '{"status": "skipped"}'
    outcomes = [PointOutcome("a", PointStatus.DONE), PointOutcome("b", PointStatus.SKIPPED), failed]
    assert outcome.count(outcomes) == {"ran": 1, "skipped": 1, "interrupted": 0, "remaining": 0, "failed": 1}
    with pytest.raises(UsageError, match="executor: 'ray'"):
        runner.ExecutionOptions(executor="ray")


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_params_file_validates(path):
    from workbench import experiments

    spec = yaml.safe_load(path.read_text())
    if "fixed" in spec or "grid" in spec or "points" in spec:
        assert runner.load_sweep(path).points
    else:
        experiments.build_config(path.stem, path)


def test_tradeoff_rejects_speculation_with_batches():
    from workbench import experiments
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="tradeoff.speculative"):
        experiments.build_config("tradeoff", None, {"speculative": True, "batch_size": 4})
