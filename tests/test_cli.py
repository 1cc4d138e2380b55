"""The `workbench` command as a user runs it: real subprocesses, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

WORKBENCH = [sys.executable, "-m", "workbench.cli"]


def run(*args, outputs):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    return subprocess.run([*WORKBENCH, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--model", "/no/such/model"], "not found"),
        (["bench", "--model", "nano", "--prompt-tokens", "-3"], "expected an integer in [1, 32768]"),
        (["bench", "--model", "nano", "--gen-tokens", "ten"], "expected an integer in [1, 8192]"),
        (["bench", "--model", "nano", "--trials", "0"], "expected an integer in [1, 100]"),
        (["build-model", "--preset", "giant"], "invalid choice"),
        (["eval", "--model", "nano", "--task", "trivia"], "invalid choice"),
        (["eval", "--model", "nano", "--text", "/no/such.txt"], "no such file"),
        (["eval", "--model", "nano"], "at least one of"),
        (["eval", "--model", "nano", "--task", "facts", "--baseline", "./missing"], "not found"),
        (["frobnicate"], "unknown command"),
        (["run", "quantise", "--params", "params/quantise.yaml", "--model", "nano", "--bogus"], "unrecognized"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    outputs = tmp_path / "outputs"
    proc = run(*args, outputs=outputs)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error:") and message in lines[0], proc.stderr
    assert not outputs.exists()


def test_bench_json_last_line(tmp_path, nano_path):
    proc = run(
        "bench",
        "--model",
        str(nano_path),
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "8",
        "--trials",
        "2",
        "--json",
        outputs=tmp_path / "outputs",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("ttft_s", "prefill_tps", "decode_tps", "tpot_s", "e2e_s", "peak_mem_bytes"):
        assert summary[key] > 0, key
    assert (tmp_path / "outputs" / "runs").is_dir()
    run_dir = tmp_path / "outputs" / "runs" / os.path.basename(summary["run_dir"])
    assert {p.name for p in run_dir.iterdir()} == {"params.yaml", "env.json", "results.parquet", "manifest.json"}


def test_eval_json_with_an_unseen_model_directory(tmp_path, nano_path):
    import shutil

    unseen = tmp_path / "some-model"
    shutil.copytree(nano_path, unseen)
    (unseen / "build.json").unlink()
    text = tmp_path / "text.txt"
    text.write_text("Plain English sentences about nothing in particular. " * 60)
    proc = run(
        "eval",
        "--model",
        str(unseen),
        "--text",
        str(text),
        "--sequence-length",
        "32",
        "--task",
        "facts",
        "--task-count",
        "4",
        "--baseline",
        str(nano_path),
        "--json",
        "--no-save",
        outputs=tmp_path / "outputs",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["perplexity"] > 1
    assert 0 <= summary["task_accuracy"] <= 1
    assert summary["kl_mean"] == pytest.approx(0, abs=1e-6) and summary["greedy_agreement"] == 1.0
    assert not (tmp_path / "outputs").exists()


def test_doctor_reports_backend_and_blas(tmp_path):
    proc = run("doctor", "--json", outputs=tmp_path / "outputs")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] in {"cpu", "metal", "cuda"}
    assert info["mlx"] and info["mlx_lm"] and info["cores"] >= 1
    assert proc.returncode == (0 if info["ready"] else 1)
