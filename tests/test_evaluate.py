"""`workbench eval` (workbench/measure/evaluate.py) on real models: nano, and the committed `default` where the
KV cache must be quantisable (nano's head dimension, 16, is below MLX's smallest group size, 32)."""

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from workbench import console
from workbench.errors import ConfigError, ModelError
from workbench.measure import evaluate, quality
from workbench.models import loader
from workbench.workloads import corpus


def run_tool(argv, capsys) -> tuple[int, str, str]:
    code = console.entry(evaluate.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def runs_written(outputs) -> list:
    return sorted((outputs / "runs").glob("*")) if (outputs / "runs").exists() else []


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "heldout.txt"
    path.write_text(corpus.heldout_text()[:40_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default():
    return loader.load("default")


def test_whole_file_perplexity_agrees_with_mlx_lm_eval_ppl(nano, text_file):
    from mlx_lm.perplexity import eval_ppl

    _, summary = evaluate.run_eval(nano, evaluate.EvalSpec(text=text_file, sequence_length=128))
    tokens = nano.tokenizer.encode(text_file.read_text())
    data = mx.array(tokens[: (len(tokens) // 128) * 128]).reshape(-1, 128)  # as mlx_lm.perplexity.load_data
    theirs, _ = eval_ppl(nano.model, data, batch_size=8)
    assert summary["perplexity"] == pytest.approx(theirs, rel=0.01)
    assert (summary["eval_tokens"], summary["total_tokens"], summary["chunks"]) == (data.size, len(tokens), len(data))
    assert data.shape[0] > 64  # the old default of 64 chunks would have cut it


def test_max_chunks_says_n_of_m_tokens(nano_path, text_file, capsys, _outputs):
    argv = ["--model", str(nano_path), "--text", str(text_file), "--sequence-length", "64", "--max-chunks", "3"]
    code, out, _ = run_tool(argv, capsys)
    total = len(loader.load(str(nano_path)).tokenizer.encode(text_file.read_text()))
    assert code == 0
    assert f"evaluated         192 of {total} tokens (3 chunks of 64)" in out
    assert len(runs_written(_outputs)) == 1
    code, out, _ = run_tool([*argv, "--json", "--no-save"], capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["eval_tokens"], summary["total_tokens"], summary["quality_measured"]) == (192, total, "perplexity")
    assert len(runs_written(_outputs)) == 1


def write_bad_text(kind: str, tmp_path):
    path = tmp_path / f"{kind}.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "latin1":
        path.write_bytes("caf\xe9 cr\xe8me ".encode("latin-1") * 100)
    elif kind == "short":
        path.write_text("Too short to fill a chunk.")
    return path


@pytest.mark.parametrize(
    "kind, message",
    [("missing", "no such file"), ("directory", "is a directory"), ("latin1", "not UTF-8"), ("short", "fewer than")],
)
def test_bad_text_is_one_line_naming_the_file_and_writes_nothing(kind, message, nano_path, tmp_path, capsys, _outputs):
    path = write_bad_text(kind, tmp_path)
    code, out, err = run_tool(["--model", str(nano_path), "--text", str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and message in err
    assert runs_written(_outputs) == []


def test_tokenizer_fingerprint_tells_tokenizers_apart(nano, default, other_tokenizer):
    swapped = loader.load(str(other_tokenizer))
    assert loader.tokenizer_fingerprint(nano.tokenizer) == loader.tokenizer_fingerprint(default.tokenizer)
    assert loader.tokenizer_fingerprint(nano.tokenizer).startswith("v2048-")
    assert loader.tokenizer_fingerprint(swapped.tokenizer) != loader.tokenizer_fingerprint(nano.tokenizer)
    with pytest.raises(ModelError, match="another tokenizer"):
        evaluate.run_eval(nano, evaluate.EvalSpec(baseline=swapped, fidelity_count=1))


def test_baseline_with_another_tokenizer_is_refused(nano_path, other_tokenizer, capsys, _outputs):
    argv = ["--model", str(nano_path), "--baseline", str(other_tokenizer), "--task", "facts", "--task-count", "2"]
    code, out, err = run_tool(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "nano-swapped" in err
    assert other_tokenizer.name in err and nano_path.name in err
    assert runs_written(_outputs) == []


def test_rows_carry_dtype_declared_identity_and_what_was_measured(nano):
    frame, summary = evaluate.run_eval(
        nano,
        evaluate.EvalSpec(
            text="stdlib",
            sequence_length=64,
            max_chunks=2,
            task="facts",
            task_count=3,
            identity={"family": "quantisation", "lossless": False, "quality_measured": "perplexity,task,fidelity"},
        ),
    )
    assert frame.height == 5
    assert set(frame["dtype"]) == {"float32"} == {summary["dtype"]}
    assert set(frame["family"]) == {"quantisation"} and set(frame["lossless"]) == {False}
    assert set(frame["quality_measured"]) == {"perplexity,task"} == {summary["quality_measured"]}


def test_kv_bits_none_is_the_plain_forward_pass(nano):
    chunks = quality.chunk_tokens(nano.tokenizer.encode(corpus.heldout_text()), 64, max_chunks=4)
    batch = mx.array(chunks)
    plain = nn.losses.cross_entropy(nano.model(batch[:, :-1]).astype(mx.float32), batch[:, 1:], reduction="none")
    np.testing.assert_array_equal(quality.token_losses(nano.model, chunks, kv_bits=None), np.array(plain).reshape(-1))


def test_kv8_perplexity_is_close_to_the_plain_one_but_not_identical(default):
    chunks = quality.chunk_tokens(default.tokenizer.encode(corpus.heldout_text()), 128, max_chunks=8)
    plain = quality.perplexity(default.model, chunks)["perplexity"]
    kv8 = quality.perplexity(default.model, chunks, kv_bits=8, kv_group_size=32)["perplexity"]
    kv2 = quality.perplexity(default.model, chunks, kv_bits=2, kv_group_size=32)["perplexity"]
    assert kv8 != plain
    assert kv8 == pytest.approx(plain, rel=0.03)
    assert abs(kv2 - plain) > abs(kv8 - plain)


def test_kv_quantised_eval_measures_fidelity_and_tasks_with_the_quantised_cache(default):
    frame, summary = evaluate.run_eval(
        default,
        evaluate.EvalSpec(task="facts", task_count=8, baseline=default, fidelity_count=3, kv_bits=4, kv_group_size=32),
    )
    assert summary["quality_measured"] == "task,fidelity"
    assert 0 < summary["kl_mean"] < 0.1
    assert json.loads(frame["params_json"][0])["kv_bits"] == 4
    prompts = [default.tokenizer.encode(p) for p in ("Context: Ida owns a duck.\nQ: What does Ida own?\nA:", "The")]
    plain = quality.greedy_continuations(default.model, default.tokenizer, prompts, 24)
    kv2 = quality.greedy_continuations(default.model, default.tokenizer, prompts, 24, kv_bits=2, kv_group_size=32)
    assert plain != kv2  # the bits reach generation


def test_kv_group_that_does_not_divide_the_head_dimension_is_refused(nano):
    with pytest.raises(ConfigError, match="head dimension 16"):
        evaluate.run_eval(nano, evaluate.EvalSpec(task="facts", task_count=1, kv_bits=8, kv_group_size=32))
    with pytest.raises(ConfigError, match="head dimension 16"):
        quality.token_losses(nano.model, np.zeros((1, 8), dtype=np.int32), kv_bits=8, kv_group_size=32)
