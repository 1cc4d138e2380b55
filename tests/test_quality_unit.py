import math

import numpy as np
import pytest

from workbench.measure import quality
from workbench.workloads import tasks


def test_exact_match_and_f1_normalise_case_and_punctuation():
    assert quality.exact_match("Paris.", "paris") == 1.0
    assert quality.exact_match("Rome", "Paris") == 0.0
    assert quality.token_f1("the red cat", "red cat") == pytest.approx(0.8)
    assert quality.token_f1("", "") == 1.0
    assert quality.token_f1("dog", "cat") == 0.0


def test_diversity():
    d = quality.diversity(["a b c", "a b d", "x y"])
    assert d["distinct_2"] == pytest.approx(4 / 5)
    assert d["first_word_repetition"] == pytest.approx(2 / 3)
    assert math.isnan(quality.diversity([])["distinct_2"])


def test_chunks_drop_the_remainder():
    chunks = quality.chunk_tokens(list(range(10)), 4)
    assert chunks.shape == (2, 4)
    np.testing.assert_array_equal(chunks[1], [4, 5, 6, 7])
    assert quality.chunk_tokens(list(range(100)), 4, max_chunks=3).shape == (3, 4)
    with pytest.raises(ValueError):
        quality.chunk_tokens([1, 2, 3], 4)


def test_task_items_are_answerable_from_their_context_and_deterministic():
    items = tasks.make_items(50, seed=3)
    assert items == tasks.make_items(50, seed=3)
    assert items != tasks.make_items(50, seed=4)
    for item in items:
        assert f" {item.reference}." in item.context
        assert item.prompt.splitlines()[-1].startswith("A: ")
    assert tasks.extract_answer(" Paris.\nQ: next") == "Paris"


def test_kv_quantisation_settings_mlx_cannot_run_are_refused():
    from workbench.errors import ConfigError

    quality.check_kv_quantisation(None, 17)  # no KV quantisation: nothing to check
    quality.check_kv_quantisation(8, 32, {32, 64})
    with pytest.raises(ConfigError, match="kv_bits=7"):
        quality.check_kv_quantisation(7, 64)
    with pytest.raises(ConfigError, match="kv_group_size=16"):
        quality.check_kv_quantisation(8, 16)
    with pytest.raises(ConfigError, match="does not divide the model's head dimension 16"):
        quality.check_kv_quantisation(8, 32, {16})


def test_summarise_losses_is_exp_of_the_mean_with_a_delta_method_error():
    losses = np.array([1.0, 2.0, 3.0, 2.0])
    summary = quality.summarise_losses(losses)
    assert summary["perplexity"] == pytest.approx(math.exp(2.0))
    assert summary["perplexity_se"] == pytest.approx(math.exp(2.0) * np.std(losses, ddof=1) / 2)
