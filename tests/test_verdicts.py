"""The statistics calibrated by simulation (known answers): paired-interval coverage with drift and correlated
trials, the family-wise error of an A/A sweep under Holm, and the power of the precision rule on a 10% change;
plus the four verdicts, Holm and the outlier rule on hand-made numbers."""

import math

import numpy as np
import polars as pl
import pytest

from workbench import stats
from workbench.analysis import verdicts
from workbench.experiments.rounds import MIN_ROUNDS
from workbench.results import rounds as round_stats


def simulated_rows(rng, *, runs: int, rounds: int, ratio: float, trials: int = 3, prefix: str = "r") -> pl.DataFrame:
    """Speed rows of `runs` runs, a baseline and a variant whose true throughput is `ratio` x the baseline's.
    log throughput = drift (a random walk over rounds, shared by both arms, with a within-round step between the
    arms) + a round x arm effect shared by the round's trials (correlated trials) + trial noise."""
    n = runs * rounds
    drift = np.cumsum(rng.normal(0, 0.08, size=(runs, rounds)), axis=1)
    step = rng.normal(0, 0.03, size=(runs, rounds))  # the later arm in a round sees a little more drift
    columns = {k: [] for k in ("run_id", "variant", "round", "trial", "window_s")}
    for arm, shift in (("baseline", 0.0), ("fast", math.log(ratio))):
        shared = rng.normal(0, 0.06, size=(runs, rounds))
        noise = rng.normal(0, 0.04, size=(runs, rounds, trials))
        later = (np.arange(rounds) % 2 == (0 if arm == "baseline" else 1))[None, :]  # the order rotates
        log_tps = math.log(100) + drift + shared + shift + np.where(later, step, 0.0)
        tps = np.exp(log_tps[:, :, None] + noise)
        columns["run_id"] += [f"{prefix}{i // rounds}" for i in range(n) for _ in range(trials)]
        columns["variant"] += [arm] * (n * trials)
        columns["round"] += [i % rounds for i in range(n) for _ in range(trials)]
        columns["trial"] += list(range(trials)) * n
        columns["window_s"] += list((32 / tps).reshape(-1))
    frame = pl.DataFrame(columns).with_columns(
        kind=pl.lit("speed"),
        generated_tokens=pl.lit(32),
        ttft_s=pl.lit(0.1),
        e2e_s=pl.col("window_s"),
        decode_tps=pl.lit(50.0),
        round=pl.col("round").cast(pl.Int32),
    )
    return frame


def test_verdict_is_the_shared_interface():
    assert stats.verdict(2.0, 8.0, min_effect=1.0) == "better"
    assert stats.verdict(2.0, 8.0, min_effect=1.0, higher_is_better=False) == "worse"
    assert stats.verdict(-8.0, -2.0, min_effect=1.0) == "worse"
    assert stats.verdict(-0.5, 0.9, min_effect=1.0) == "equivalent"
    assert stats.verdict(-3.0, 4.0, min_effect=1.0) == "inconclusive"
    assert stats.verdict(0.1, 1.5, min_effect=1.0) == "inconclusive"  # excludes 0 but the midpoint is too small
    assert stats.verdict(math.nan, 1.0, min_effect=1.0) == "inconclusive"


def test_holm_and_outliers_on_hand_made_numbers():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(stats.holm([math.nan, 0.02])[0]) and stats.holm([math.nan, 0.02])[1] == pytest.approx(0.02)
    assert stats.mad_outliers([10, 11, 9, 10, 10.5, 40]) == [False] * 5 + [True]
    assert stats.rounds_for(0.05, 0.03) == 14  # t(0.975, 13) * 0.05 / sqrt(14) = 0.0289 <= log(1.03) = 0.0296


def test_the_trimmed_interval_is_yuens_and_one_stalled_round_does_not_widen_it():
    from scipy.stats import mstats

    rng = np.random.default_rng(2)
    ratios = rng.normal(0.0, 0.05, 40)
    low, high = mstats.trimmed_mean_ci(ratios, limits=(stats.TRIM, stats.TRIM))  # scipy's Tukey-McLaughlin
    change = stats.paired_from_log_ratios(ratios)
    assert (math.log1p(change.ci_low), math.log1p(change.ci_high)) == pytest.approx((low, high), rel=1e-9)
    stalled = np.append(ratios[:-1], 1.5)  # one round in which the variant stalled: 4.5x as slow
    mean_only = stats.paired_from_log_ratios(stalled, trim=0.0)
    robust = stats.paired_from_log_ratios(stalled)
    assert robust.half_width < 0.03 < mean_only.half_width and abs(robust.change) < 0.03
    few = rng.normal(0.0, 0.05, 9)  # below 10 rounds nothing is trimmed: the ordinary paired t interval
    assert stats.paired_from_log_ratios(few).half_width == stats.paired_from_log_ratios(few, trim=0.0).half_width


def test_paired_interval_covers_the_true_change_with_drift_and_correlated_trials():
    rng = np.random.default_rng(7)
    compared = verdicts.speed_comparisons(
        simulated_rows(rng, runs=500, rounds=8, ratio=1.10), metrics=("throughput_tps",)
    )
    assert compared.height == 500 and (compared["rounds"] == 8).all()
    covered = ((compared["ci_low_pct"] <= 10.0) & (compared["ci_high_pct"] >= 10.0)).mean()
    assert covered >= 0.93, f"coverage {covered:.3f}"


def test_aa_sweep_of_twenty_comparisons_keeps_the_family_wise_error_under_five_percent():
    rng = np.random.default_rng(11)
    compared = verdicts.speed_comparisons(
        simulated_rows(rng, runs=500 * 20, rounds=6, ratio=1.0), metrics=("throughput_tps",)
    )
    sweep = compared.with_columns(sweep=pl.col("run_id").str.slice(1).cast(pl.Int64) // 20)
    false_positive = 0
    for part in sweep.partition_by("sweep"):
        assert part.height == 20
        judged = verdicts.with_verdicts(part.drop("sweep"))
        false_positive += bool(judged["significant"].any() or judged["verdict"].is_in(["better", "worse"]).any())
    assert false_positive / 500 <= 0.05, f"family-wise error {false_positive / 500:.3f}"


def test_a_true_ten_percent_change_is_better_at_the_rounds_the_precision_rule_picks():
    rng = np.random.default_rng(3)
    precision, max_rounds, better, used = 0.03, 40, 0, []
    frame = simulated_rows(rng, runs=500, rounds=max_rounds, ratio=1.10)
    samples = round_stats.round_samples(frame)
    for (_,), run in samples.partition_by("run_id", as_dict=True).items():
        base = run.filter(variant="baseline").sort("round")["throughput_tps"].to_numpy()
        fast = run.filter(variant="fast").sort("round")["throughput_tps"].to_numpy()
        for n in range(MIN_ROUNDS, max_rounds + 1):  # the run's stop rule: stop on the width, never on significance
            change = stats.paired_change(base[:n], fast[:n])
            if change.half_width <= precision:
                break
        used.append(n)
        better += stats.verdict(change.ci_low, change.ci_high, min_effect=stats.MIN_EFFECT) == "better"
    assert better / 500 >= 0.90, f"detected {better / 500:.3f} at a median of {np.median(used)} rounds"


def test_comparisons_carry_rounds_half_width_and_labels():
    rng = np.random.default_rng(5)
    compared = verdicts.speed_comparisons(simulated_rows(rng, runs=1, rounds=4, ratio=1.0))
    assert set(compared["metric"]) == set(verdicts.SPEED_METRICS)
    row = compared.filter(metric="throughput_tps").row(0, named=True)
    assert row["rounds"] == 4 and row["half_width_pct"] > 0 and row["min_effect_pct"] == pytest.approx(5.0)
    assert row["label"].startswith(row["verdict"])
    flat = compared.filter(metric="ttft_s").row(0, named=True)  # identical TTFT in every round: a zero-width point
    assert flat["verdict"] == "equivalent" and flat["half_width_pct"] == 0


def test_a_clear_verdict_short_of_its_runs_precision_target_says_how_precise_it_is():
    rows = simulated_rows(np.random.default_rng(9), runs=1, rounds=8, ratio=1.5)
    plain = verdicts.speed_comparisons(rows, metrics=("throughput_tps",)).row(0, named=True)
    assert plain["verdict"] == "better" and plain["label"] == "better"
    asked = verdicts.speed_comparisons(rows.with_columns(precision_target=pl.lit(0.001)), metrics=("throughput_tps",))
    row = asked.row(0, named=True)
    assert row["precision_target_pct"] == pytest.approx(0.1) and row["precision_pct"] > 0.1
    assert row["verdict"] == "better" and row["label"] == f"better (±{row['precision_pct']:.2g}% of the ratio)"
    reached = verdicts.speed_comparisons(rows.with_columns(precision_target=pl.lit(0.5)), metrics=("throughput_tps",))
    assert reached.row(0, named=True)["label"] == "better"


def test_report_json_comparisons_come_in_the_same_order_whatever_the_row_order():
    rows = simulated_rows(np.random.default_rng(4), runs=3, rounds=5, ratio=1.2)
    first = verdicts.comparisons_json(verdicts.speed_comparisons(rows), pl.DataFrame(), None)
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=1)
    again = verdicts.comparisons_json(verdicts.speed_comparisons(shuffled), pl.DataFrame(), None)
    keys = [(c["point_id"], c["metric"]) for c in first]
    assert keys == [(c["point_id"], c["metric"]) for c in again] and keys == sorted(keys, key=lambda k: k[0])
    assert [c["metric"] for c in first[: len(verdicts.SPEED_METRICS)]] == list(verdicts.SPEED_METRICS)
