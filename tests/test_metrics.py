import math

import pytest

from workbench.measure import timed


def test_request_metrics_known_timeline():
    # sent at 10.0; tokens at 10.5, 10.6, 10.8, 11.1
    row = timed.request_metrics(10.0, [10.5, 10.6, 10.8, 11.1], prompt_tokens=100)
    assert row["ttft_s"] == pytest.approx(0.5)
    assert row["itl_s"] == pytest.approx([0.1, 0.2, 0.3])
    assert row["tpot_s"] == pytest.approx(0.6 / 3)
    assert row["e2e_s"] == pytest.approx(1.1)
    assert row["prefill_tps"] == pytest.approx(200.0)
    assert row["decode_tps"] == pytest.approx(3 / 0.6)
    assert row["generated_tokens"] == 4


def test_single_token_request_has_no_decode_rate():
    row = timed.request_metrics(0.0, [0.25], prompt_tokens=10)
    assert row["ttft_s"] == row["e2e_s"] == 0.25
    assert math.isnan(row["tpot_s"]) and math.isnan(row["decode_tps"])
    assert row["itl_s"] == []


def test_empty_timeline_is_an_error():
    with pytest.raises(ValueError):
        timed.request_metrics(0.0, [], prompt_tokens=3)


def test_run_summary_throughput_over_windows():
    records = []
    for trial, window in enumerate([2.0, 2.0]):
        for i in range(2):
            metrics = timed.request_metrics(0.0, [0.1, 0.2, 0.3, 0.4, 0.5], prompt_tokens=8)
            records.append(
                timed.RequestRecord(
                    round=0,
                    trial=trial,
                    request_index=i,
                    batch_index=i,
                    batch_size=1,
                    **metrics,
                    window_s=window,
                    peak_mem_bytes=10 + trial,
                    rss_bytes=5,
                    mlx_prompt_tps=1.0,
                    mlx_generation_tps=1.0,
                    output_tokens=[1, 2, 3, 4, 5],
                )
            )
    summary = timed.run_summary(records)
    assert summary["throughput_tps"] == pytest.approx(20 / 4.0)
    assert summary["throughput_rps"] == pytest.approx(4 / 4.0)
    assert summary["ttft_s"] == pytest.approx(0.1)
    assert summary["decode_tps"] == pytest.approx(10.0)
    assert summary["peak_mem_bytes"] == 11
    assert summary["trials"] == 2
