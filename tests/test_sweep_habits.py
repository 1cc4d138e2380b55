"""A researcher's habits on a real two-point sweep (quantise on nano through papermill): `label:` per point,
`workbench sweeps --json` with dates and each point's state, `export --csv|--parquet` with list columns
flattened, `sweep --rerun` re-measuring finished points (earlier results kept), and a sweep-level time budget."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest
import yaml

from workbench import console
from workbench.present import headline
from workbench.results import export
from workbench.sweep import listing, spec

SWEEP = {
    "name": "habits",
    "experiment": "quantise",
    "fixed": {
        "model": "nano",
        "prompt_tokens": 8,
        "gen_tokens": 4,
        "requests": 2,
        "trials": 1,
        "perplexity_chunks": 0,
        "task_count": 0,
        "fidelity_count": 0,
        "kv_bits": [],
    },
    "points": [{"variants": [{"bits": 8}], "label": "eight bits"}, {"variants": [{"bits": 4}]}],
    "timeout_s": 300,
    "retries": 0,
}


def cli(*args, outputs):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def call(capsys, main, *args) -> subprocess.CompletedProcess:
    """A command run in this process (`console.entry`, as the CLI runs it): the commands that measure nothing, so
    the test does not start a Python for each; its exit code, stdout and stderr."""
    capsys.readouterr()
    code = console.entry(main, list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def write(tmp_path, **changes):
    path = tmp_path / f"{changes.get('name', SWEEP['name'])}.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


def test_label_is_a_name_not_a_parameter(tmp_path):
    path = write(tmp_path)
    plan = spec.load_sweep(path)
    assert [p.label for p in plan.points] == ["eight bits", None]
    unlabelled = write(tmp_path, name="nolabel", points=[{"variants": [{"bits": 8}]}, {"variants": [{"bits": 4}]}])
    assert [p.point_id for p in spec.load_sweep(unlabelled).points] == [p.point_id for p in plan.points]
    bad = write(tmp_path, name="badlabel", points=[{"variants": [{"bits": 8}], "label": ["x"]}])
    with pytest.raises(spec.SweepError, match="label: expected a non-empty string"):
        spec.load_sweep(bad)


def test_sweeps_json_export_rerun_and_time_budget(tmp_path, nano_path, kernel, _outputs, capsys):
    path = write(tmp_path)
    first = cli("sweep", str(path), "--json", outputs=_outputs)
    assert first.returncode == 0, first.stderr

    resumed = call(capsys, headline.sweep_main, str(path))  # nothing to run; the sweep still ends with its headline
    assert resumed.returncode == 0 and resumed.stdout.strip().splitlines()[-1].startswith("headline: ")
    assert "@" not in resumed.stdout.strip().splitlines()[-1]

    listed = call(capsys, listing.list_main, "--json")
    assert listed.returncode == 0, listed.stderr
    (habits,) = [s for s in json.loads(listed.stdout) if s["sweep"] == "habits"]  # stdout: one JSON document
    assert habits["experiment"] == "quantise" and habits["done"] == 2 and habits["last_run"].startswith("20")
    assert {p["state"] for p in habits["points"]} == {"done"} and all(p["updated_at"] for p in habits["points"])
    assert sorted(p["label"] or "" for p in habits["points"]) == ["", "eight bits"]
    assert "last 20" in call(capsys, listing.list_main).stdout

    csv = call(capsys, export.main, "habits", "--csv", "-o", str(tmp_path / "habits.csv"))
    assert csv.returncode == 0, csv.stderr
    rows = pl.read_csv(tmp_path / "habits.csv", infer_schema_length=None)
    speed = rows.filter(pl.col("kind") == "speed")
    assert speed.height == 2 * 2 * 2 * 2  # two points x (baseline + variant) x 2 requests x 2 rounds
    gaps = json.loads(speed["itl_s"][0])
    assert len(gaps) == 3 and all(gap > 0 for gap in gaps)  # 4 tokens: 3 gaps, back from the flattened text
    assert set(rows["point_label"].drop_nulls()) == {"eight bits"}
    parquet = call(capsys, export.main, "habits", "--parquet")
    assert parquet.returncode == 0 and pl.read_parquet(parquet.stdout.strip()).height == rows.height
    assert call(capsys, export.main, "nosuch", "--csv").returncode == 2

    labelled = next(p["point_id"] for p in habits["points"] if p["label"])
    before = (_outputs / "sweeps" / "habits" / labelled / "results.parquet").read_bytes()
    again = cli("sweep", str(path), "--rerun", labelled, "--json", outputs=_outputs)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["ran"], summary["skipped"], summary["remeasured"]) == (1, 1, 1)
    (kept,) = (_outputs / "sweeps" / "habits" / labelled / ".replaced").iterdir()
    assert (kept / "results.parquet").read_bytes() == before and (kept / "manifest.json").is_file()
    assert (_outputs / "sweeps" / "habits" / labelled / "results.parquet").read_bytes() != before
    assert call(capsys, headline.sweep_main, str(path), "--rerun", "nosuch").returncode == 2

    budget = write(tmp_path, name="budget", time_budget_s=1)
    proc = cli("sweep", str(budget), "--json", outputs=_outputs)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["ran"], summary["remaining"]) == (1, 1) and "time_budget_s (1 s) was spent" in proc.stderr
    proc = cli("sweep", str(budget), "--json", outputs=_outputs)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["ran"], summary["skipped"]) == (1, 1)
