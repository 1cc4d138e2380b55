"""Real MLX on the nano model: measurement, quality and the cross-checks against mlx-lm."""

import math

import mlx.core as mx
import numpy as np
import pytest

from workbench.measure import bench, evaluate, quality, timed
from workbench.results import store
from workbench.workloads import prompt_sets


def test_bench_rows_follow_the_schema(nano):
    frame, summary = bench.run_bench(nano, bench.BenchSpec(prompt_tokens=16, gen_tokens=8, trials=2, batch_size=1))
    assert frame.schema == store.to_frame([]).schema
    assert frame.height == 2
    assert set(frame["kind"]) == {"speed"}
    assert frame["generated_tokens"].to_list() == [8, 8]
    assert all(len(itl) == 7 for itl in frame["itl_s"].to_list())
    assert frame["workload_hash"].n_unique() == 1 and frame["backend"][0] in {"cpu", "metal", "cuda", "gpu"}
    assert 0 < summary["ttft_s"] < summary["e2e_s"]
    assert summary["throughput_tps"] > 0 and summary["peak_mem_bytes"] > 0


def test_batched_bench_gives_one_row_per_request(nano):
    frame, summary = bench.run_bench(nano, bench.BenchSpec(prompt_tokens=16, gen_tokens=6, trials=1, batch_size=4))
    assert frame.height == 4
    assert set(frame["batch_size"]) == {4}
    assert frame["generated_tokens"].to_list() == [6] * 4
    assert summary["requests"] == 4


def test_decode_speed_agrees_with_mlx_lm_own_figure(nano):
    """Our decode tok/s = (N-1)/(t_N - t_1); mlx-lm's = N/(t_N - t_1) on the same clock readings."""
    rows = timed.measure_generation(
        nano.model, nano.tokenizer, [list(range(1, 33))], timed.Schedule(trials=2), gen_tokens=32
    )
    for row in rows:
        assert row.decode_tps * 32 / 31 == pytest.approx(row.mlx_generation_tps, rel=0.05)
        assert row.prefill_tps == pytest.approx(row.mlx_prompt_tps, rel=0.25)


def test_perplexity_matches_mlx_lm_eval_ppl(nano):
    from mlx_lm.perplexity import eval_ppl

    tokens = nano.tokenizer.encode(" ".join(["The quick brown fox jumps over the lazy dog."] * 30))
    chunks = quality.chunk_tokens(tokens, 32, max_chunks=8)
    ours = quality.perplexity(nano.model, chunks, batch_size=3)
    theirs, _ = eval_ppl(nano.model, mx.array(chunks), batch_size=8)
    assert ours["perplexity"] == pytest.approx(theirs, rel=0.01)
    assert ours["eval_tokens"] == chunks.shape[0] * 31


def test_fidelity_of_a_model_against_itself(nano):
    prompts = prompt_sets.task(count=3).token_prompts(nano.tokenizer)
    rows = quality.fidelity(nano.model, nano.model, prompts)
    for row in rows:
        assert row["kl_mean"] == pytest.approx(0.0, abs=1e-6)
        assert row["greedy_agreement"] == 1.0
        assert row["first_divergence"] == -1


def test_fidelity_detects_a_perturbed_model(nano):
    import copy

    from mlx.utils import tree_map

    other = copy.deepcopy(nano.model)
    other.update(tree_map(lambda w: w + 0.05 * mx.random.normal(w.shape, key=mx.random.key(1)), other.parameters()))
    rows = quality.fidelity(nano.model, other, prompt_sets.task(count=3).token_prompts(nano.tokenizer))
    assert all(r["kl_mean"] > 1e-4 for r in rows)


def test_eval_writes_quality_rows(nano):
    frame, summary = evaluate.run_eval(
        nano,
        evaluate.EvalSpec(
            text="stdlib",
            sequence_length=64,
            max_chunks=4,
            task="facts",
            task_count=5,
            baseline=nano,
            fidelity_count=2,
            fidelity_tokens=4,
        ),
    )
    kinds = frame.group_by("kind").len().sort("kind")
    assert dict(kinds.iter_rows()) == {"perplexity": 4, "task": 5, "fidelity": 2}
    nll = frame.filter(kind="perplexity")["nll_mean"].to_numpy()
    assert summary["perplexity"] == pytest.approx(math.exp(np.mean(nll)))
    assert 0 <= summary["task_accuracy"] <= 1
    assert summary["kl_mean"] == pytest.approx(0.0, abs=1e-6)


def test_trained_nano_beats_its_untrained_self(nano):
    from workbench.models import build
    from workbench.workloads import corpus

    chunks = quality.chunk_tokens(nano.tokenizer.encode(corpus.heldout_text()), 64, max_chunks=8)
    trained = quality.perplexity(nano.model, chunks)["perplexity"]
    untrained = quality.perplexity(build.init_model(build.get_recipe("nano")), chunks)["perplexity"]
    assert trained < untrained / 2
