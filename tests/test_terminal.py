"""The terminal reads like GuideLLM's: `run`, `bench`, `bench --target` and `eval` print compact rich tables that
fit 100 columns in ms, tok/s and MiB, with human configuration names, changes with intervals and verdicts."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import cli, names, terminal
from workbench.endpoint.stub import StubThread
from workbench.paths import REPO_ROOT

QUANTISE = """model: nano
prompt_tokens: 16
gen_tokens: 8
requests: 2
trials: 2
perplexity_chunks: 2
perplexity_sequence_length: 32
task_count: 4
fidelity_count: 2
variants:
  - {bits: 8}
  - {bits: 4, group_size: 32}
"""


def test_run_quantise_fits_100_columns_with_names_units_and_progress(nano_path, tmp_path):
    params = tmp_path / "quantise.yaml"
    params.write_text(QUANTISE)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe: no terminal width to take
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", "quantise", "--params", str(params), "--no-save"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 100, "\n".join(line for line in lines if len(line) > 100)
    text = proc.stdout
    assert "nano · 16 prompt + 8 output tokens · 2 requests × 2 trials × 2 rounds" in text
    for cell in ("baseline", "8-bit weights", "4-bit weights", "(group 32)", "ms", "tok/s", "MiB", "(95% CI)"):
        assert cell in text
    assert "[INFO]" not in text and "q4g32" not in text  # mlx_lm's convert log and code names stay off stdout
    assert not re.search(r"\d\.\d{5,}", text), "raw floats in the table"
    variant_lines = [line for line in lines if line.lstrip().startswith(("8-bit", "4-bit"))]
    assert len(variant_lines) == 2 and all("%" in line for line in variant_lines)  # change + interval on each
    for step in ("8-bit weights: quantising (1/2)", "speed round 2/2", "quality of 4-bit weights (group 32)"):
        assert step in proc.stderr


def test_bench_target_levels_make_one_table(capsys):
    with StubThread(token_delay_s=0.001) as stub:
        argv = ["bench", "--target", stub.url, "--concurrency", "1,2,4", "--requests", "4", "--gen-tokens", "4"]
        assert cli.main([*argv, "--trials", "1", "--no-save"]) == 0
        out = capsys.readouterr().out
        assert max(map(len, out.splitlines())) <= 100
        assert "4 requests × 1 trial per level" in out
        assert [line.split()[0] for line in out.splitlines() if re.match(r" (synchronous|concurrency) ", line)] == [
            "synchronous",
            "concurrency",
            "concurrency",
        ]
        assert cli.main([*argv, "--trials", "1", "--no-save", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert [level["level"] for level in summary["levels"]] == [1, 2, 4]
        assert [level["requests"] for level in summary["levels"]] == [4, 4, 4]
        rate = ["bench", "--target", stub.url, "--rate", "50,100", "--requests", "3", "--gen-tokens", "2"]
        assert cli.main([*rate, "--trials", "1", "--no-save"]) == 0
        assert "rate 50" in capsys.readouterr().out
        assert cli.main([*rate, "--concurrency", "2", "--no-save"]) == 2
        assert "not both" in capsys.readouterr().err
        assert cli.main(["bench", "--target", stub.url, "--concurrency", "1,,2"]) == 2
        assert "comma-separated" in capsys.readouterr().err


def test_help_shows_defaults_and_requests_per_trial(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--trials TRIALS default: 3" in out and "--prompt-tokens PROMPT_TOKENS default: 128" in out
    assert "per trial: a run sends requests × trials" in out
    assert "--seed SEED seeds synthetic prompts and --dataset-order shuffle (default: 0)" in out


def test_verdicts_are_read_generically_with_their_half_width():
    assert terminal.verdict({"verdict": "no significant difference"}) == "within noise"
    assert terminal.verdict({"verdict": "better"}) == "better"
    assert terminal.verdict({"verdict": "inconclusive", "ci_low_pct": -4.0, "ci_high_pct": 12.0}) == "inconclusive ±8%"
    assert terminal.verdict({"verdict": "inconclusive", "half_width_pct": 3.2}) == "inconclusive ±3%"
    assert terminal.change({"change_pct": 31.3, "ci_low_pct": 13.0, "ci_high_pct": 49.5}) == "+31% (+13%…+50%)"
    assert terminal.change({"change_pct": 2.5}) == "+2.5% (no CI)"
    assert terminal.value("ttft_s", 0.0351) == "35.1" and terminal.value("peak_mem_bytes", 3 * 2**20) == "3.00"


def test_render_keeps_brackets_and_fits_narrow_terminals(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    text = terminal.render(["name", "a\nms"], [["[bold]x[/bold] " * 6, "1.00"]], title="t " * 40)
    assert "[bold]" in text and max(map(len, text.splitlines())) <= 60


def test_configuration_names_come_from_declared_changes():
    assert names.configuration_name({"bits": 8, "group_size": 64, "batch_size": 8}) == "8-bit weights, batch 8"
    assert names.configuration_name('{"kv_bits": 4, "kv_group_size": 32}') == "4-bit KV cache"
    assert names.configuration_name({}, family="baseline", variant="fp-b1-aa") == "baseline (A/A copy)"
    assert names.configuration_name({"bits": 4}, label="my pick") == "my pick"
    served = {"served": True, "server": {"decode_concurrency": 8}, "server_model": None, "target": None}
    assert names.configuration_name(served) == "served, decode concurrency 8"
    assert names.configuration_name(None, variant="old-name") == "old-name"  # rows from before declarations


def test_params_default_to_the_experiments_own_file(tmp_path, monkeypatch):
    from workbench import run
    from workbench.errors import ConfigError

    assert run.params_file("quantise", None) == REPO_ROOT / "params" / "quantise.yaml"
    assert run.params_file("quantise", "mine.yaml") == Path("mine.yaml")
    monkeypatch.setattr(run, "REPO_ROOT", tmp_path)
    with pytest.raises(ConfigError, match="no --params given and params/quantise.yaml does not exist"):
        run.params_file("quantise", None)
