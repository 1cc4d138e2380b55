"""The one statistics module against known answers, with scipy and numpy as the references."""

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sp

from workbench import stats


def test_percentiles_are_numpy_linear_and_polars_agrees():
    values = [0.41, 0.93, 0.12, 0.77, 0.58, 0.36, 0.05, 0.99, 0.64, 0.21, 0.88, 0.47, 0.30, 0.72, 0.15, 0.54]
    for q in (50, 90, 99):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
        polars_value = pl.DataFrame({"v": values}).select(stats.quantile_expr("v", q / 100)).item()
        assert polars_value == pytest.approx(stats.percentile(values, q))
    assert stats.percentile(list(range(1, 101)), 90) == pytest.approx(90.1)


def test_describe_drops_nan_and_none():
    figures = stats.describe(list(range(1, 101)) + [math.nan, None])
    assert figures == pytest.approx({"mean": 50.5, "p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert math.isnan(stats.describe([])["p50"])


def test_mean_interval_is_student_t():
    values = [1.0, 2.0, 3.0, 4.0]
    low, high = stats.mean_interval(values)
    half = sp.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert half == pytest.approx(2.054, abs=1e-3)  # t(3) = 3.18, not z = 1.96
    assert math.isnan(stats.mean_interval([1.0])[0])


def test_difference_is_welch_and_small_samples_are_wide():
    a, b = [10.0, 12.0], [13.0, 15.0]
    change = stats.difference(a, b)
    reference = sp.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (change.ci_low, change.ci_high) == pytest.approx((reference.low, reference.high))
    assert change.diff == pytest.approx(3.0)
    # with two trials a side, t = 4.30: a 3-unit gain over a spread of 1.4 is not distinguishable from zero
    assert not change.excludes_zero()
    assert change.ratio == pytest.approx(14 / 11)


def test_significance_needs_the_interval_and_the_noise_floor():
    a, b = [100.0, 101.0, 99.0, 100.0], [110.0, 111.0, 109.0, 110.0]
    change = stats.difference(a, b)
    assert change.excludes_zero() and change.change_pct == pytest.approx(10.0)
    assert stats.is_significant(change, noise_floor_pct=5.0)
    assert not stats.is_significant(change, noise_floor_pct=12.0)
    flat = stats.difference([1.0, 1.0], [1.0, 1.0])
    assert not stats.is_significant(flat, 0.0)


def test_json_safe_replaces_nan():
    assert stats.json_safe({"a": [1.0, math.nan], "b": math.inf, "c": np.float64(2.0)}) == {
        "a": [1.0, None],
        "b": None,
        "c": 2.0,
    }


def test_slope_interval_widens_for_correlated_points():
    x = [0.1 * i for i in range(40)]
    y = [2 * v + (0.3 if i % 2 else -0.3) for i, v in enumerate(x)]
    slope, half = stats.slope_interval(x, y)
    same, wider = stats.slope_interval(x, y, effective_n=4)
    assert slope == pytest.approx(2.0, rel=0.05) and same == slope
    assert wider > 3 * half  # 4 independent samples, not 40, and t with 2 degrees of freedom
