import math

import pytest

from workbench import measure


def test_request_metrics_known_timeline():
    # sent at 10.0; tokens at 10.5, 10.6, 10.8, 11.1
    row = measure.request_metrics(10.0, [10.5, 10.6, 10.8, 11.1], prompt_tokens=100)
    assert row["ttft_s"] == pytest.approx(0.5)
    assert row["itl_s"] == pytest.approx([0.1, 0.2, 0.3])
    assert row["tpot_s"] == pytest.approx(0.6 / 3)
    assert row["e2e_s"] == pytest.approx(1.1)
    assert row["prefill_tps"] == pytest.approx(200.0)
    assert row["decode_tps"] == pytest.approx(3 / 0.6)
    assert row["generated_tokens"] == 4


def test_single_token_request_has_no_decode_rate():
    row = measure.request_metrics(0.0, [0.25], prompt_tokens=10)
    assert row["ttft_s"] == row["e2e_s"] == 0.25
    assert math.isnan(row["tpot_s"]) and math.isnan(row["decode_tps"])
    assert row["itl_s"] == []


def test_empty_timeline_is_an_error():
    with pytest.raises(ValueError):
        measure.request_metrics(0.0, [], prompt_tokens=3)


def test_summarise_percentiles_and_nan_filtering():
    stats = measure.summarise(list(range(1, 101)) + [math.nan, None])
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01)
    assert math.isnan(measure.summarise([])["p50"])


def test_confidence_interval_contains_mean_and_shrinks():
    lo, hi = measure.confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert lo < 2.5 < hi
    lo2, hi2 = measure.confidence_interval([1.0, 2.0, 3.0, 4.0] * 25)
    assert hi2 - lo2 < hi - lo


def test_run_summary_throughput_over_windows():
    rows = []
    for trial, window in enumerate([2.0, 2.0]):
        for _ in range(2):
            r = measure.request_metrics(0.0, [0.1, 0.2, 0.3, 0.4, 0.5], prompt_tokens=8)
            r.update(trial=trial, window_s=window, peak_mem_bytes=10 + trial, rss_bytes=5)
            rows.append(r)
    summary = measure.run_summary(rows)
    assert summary["throughput_tps"] == pytest.approx(20 / 4.0)
    assert summary["throughput_rps"] == pytest.approx(4 / 4.0)
    assert summary["ttft_s"] == pytest.approx(0.1)
    assert summary["decode_tps"] == pytest.approx(10.0)
    assert summary["peak_mem_bytes"] == 11
