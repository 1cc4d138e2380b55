"""Quality intervals with known answers: simulated per-item, per-chunk and per-prompt rows whose true difference is
known (coverage at the nominal rate, equivalence when identical), McNemar on a hand example, the verdict rule."""

import math

import numpy as np
import polars as pl
import pytest

from workbench import stats
from workbench.analysis import quality_compare as qc
from workbench.errors import ConfigError
from workbench.results import store


def task_frame(scores: dict[str, list[float]], f1: dict[str, list[float]] | None = None, point: str | None = None):
    """Task rows: one per (variant, item), the same items for every variant."""
    frames = []
    for variant, values in scores.items():
        rows = [
            {
                "kind": "task",
                "request_index": i,
                "item_id": f"facts-{i}",
                "metric": "exact_match",
                "score": s,
                "exact_match": s,
                "token_f1": (f1 or {}).get(variant, values)[i],
            }
            for i, s in enumerate(values)
        ]
        frames.append(store.to_frame(rows, run_id="r1", variant=variant, workload="facts", workload_hash="w1"))
    frame = pl.concat(frames)
    return frame.with_columns(point_id=pl.lit(point)) if point else frame


def chunk_frame(nll: dict[str, list[float]], tokens: int = 127):
    frames = [
        store.to_frame(
            [{"kind": "perplexity", "request_index": i, "nll_mean": x, "eval_tokens": tokens} for i, x in enumerate(v)],
            run_id="r1",
            variant=variant,
            workload_hash="text",
        )
        for variant, v in nll.items()
    ]
    return pl.concat(frames)


def fidelity_frame(variant: str, kl: list[float], agreement: list[float], positions: int = 40):
    rows = [
        {"kind": "fidelity", "request_index": i, "kl_mean": k, "greedy_agreement": a, "positions": positions}
        for i, (k, a) in enumerate(zip(kl, agreement))
    ]
    return store.to_frame(rows, run_id="r1", variant=variant, workload_hash="prompts")


@pytest.mark.parametrize(
    ("low", "high", "higher", "expected"),
    [
        (2.0, 6.0, True, "better"),
        (2.0, 6.0, False, "worse"),
        (-6.0, -2.0, True, "worse"),
        (-0.5, 0.5, True, "equivalent"),
        (0.0, 0.0, True, "equivalent"),
        (-3.0, 1.0, True, "inconclusive"),
        (0.2, 1.6, True, "inconclusive"),  # excludes 0, but the midpoint 0.9 is within the 1.0 threshold
        (math.nan, 1.0, True, "inconclusive"),
    ],
)
def test_verdict_follows_the_shared_rule(low, high, higher, expected):
    assert stats.verdict(low, high, min_effect=1.0, higher_is_better=higher) == expected


def test_mcnemar_exact_on_a_hand_example():
    # 10 items lost, 2 gained, 88 unchanged: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    reference = [1] * 10 + [0] * 2 + [1] * 50 + [0] * 38
    variant = [0] * 10 + [1] * 2 + [1] * 50 + [0] * 38
    assert stats.mcnemar_exact(reference, variant) == pytest.approx(158 / 4096)
    assert stats.mcnemar_exact(reference, reference) == 1.0


@pytest.mark.parametrize(
    ("lose", "gain", "items"),
    [
        (0.15, 0.05, 100),  # the baseline right on 65%, the variant loses 15% of those, gains 5% of the rest: -8 pts
        (0.03, 0.02, 100),  # rare flips (~3 items in 100): a percentile bootstrap over items covers 84% here
        (0.0, 0.0, 10),  # identical: the interval stays wide on 10 items, so the verdict cannot be "equivalent"
    ],
)
def test_paired_score_interval_covers_a_known_accuracy_change(lose, gain, items):
    rng = np.random.default_rng(7)
    true_change, covered, repeats = (-0.65 * lose + 0.35 * gain) * 100, 0, 500
    for _ in range(repeats):
        base = rng.random(items) < 0.65
        flip = rng.random(items) < np.where(base, lose, gain)
        _, low, high = (x * 100 for x in stats.paired_score_interval(base, base ^ flip))
        covered += low <= true_change <= high
    assert covered / repeats >= 0.93
    if not lose:
        assert stats.verdict(low, high, min_effect=1.0) == "inconclusive" and high - low > 20


def test_bonett_price_interval_on_a_hand_example():
    # 21 items lost, 11 gained of 100 (the demo's q2): p12 = 22/102, p21 = 12/102, se = sqrt((p12 + p21 - d^2) / 102)
    reference = [1] * 21 + [0] * 11 + [1] * 45 + [0] * 23
    variant = [0] * 21 + [1] * 11 + [1] * 45 + [0] * 23
    change, low, high = stats.paired_score_interval(reference, variant)
    d = (12 - 22) / 102
    half = 1.959964 * math.sqrt((34 / 102 - d * d) / 102)
    assert change == pytest.approx(-0.10)
    assert (low, high) == pytest.approx((d - half, d + half), abs=1e-6)


def test_perplexity_ratio_interval_covers_a_known_ratio():
    """32 chunks whose NLL varies 10x more between chunks than the change does: pairing removes that spread."""
    rng = np.random.default_rng(3)
    true_log_ratio, covered, repeats, widths = 0.03, 0, 400, []
    for _ in range(repeats):
        base = rng.normal(4.5, 0.3, 32)
        variant = base + rng.normal(true_log_ratio, 0.03, 32)
        tokens = np.full(32, 127.0)
        estimate, low, high, _ = stats.ratio_interval((variant - base) * tokens, tokens)
        covered += low <= true_log_ratio <= high
        widths.append(high - low)
    assert covered / repeats >= 0.93
    assert np.median(widths) < 0.03  # unpaired, the chunks' own spread (0.3) would make it ~0.3 wide


def test_agreement_interval_clustered_by_prompt_covers_the_truth():
    """Prompts differ in how often the argmax flips: positions of one prompt are correlated, so the interval is
    over prompts (a per-position binomial interval would be too narrow)."""
    rng = np.random.default_rng(11)
    covered, repeats = 0, 500
    for _ in range(repeats):
        rates = rng.beta(18, 2, 24)  # true mean agreement 0.9
        agree = rng.binomial(40, rates) / 40
        estimate, low, high, _ = stats.ratio_interval(agree * 40, np.full(24, 40.0))
        covered += low <= 0.9 <= high
    assert covered / repeats >= 0.93


def test_identical_variant_is_equivalent_on_every_metric():
    """400 items that all come out the same bound a change to ±0.7 points; identical chunks and prompts (the same
    computation) give zero width."""
    rng = np.random.default_rng(0)
    scores = (rng.random(400) < 0.6).astype(float).tolist()
    nll = rng.normal(4.5, 0.3, 16).tolist()
    frame = pl.concat(
        [
            task_frame({"baseline": scores, "copy": scores}),
            chunk_frame({"baseline": nll, "copy": nll}),
            fidelity_frame("copy", [0.0] * 8, [1.0] * 8),
        ],
        how="diagonal_relaxed",
    )
    out = qc.quality_comparisons(frame)
    assert out.columns == list(qc.COLUMNS)
    assert out["metric"].to_list() == ["task_accuracy", "task_f1", "perplexity", "kl_mean", "greedy_agreement"]
    assert set(out["verdict"]) == {"equivalent"}
    task = out.filter(metric="task_accuracy").row(0, named=True)
    assert task["n"] == 400 and task["change"] == 0 and 0.6 < task["half_width"] < 0.7
    assert task["p_value"] == 1.0 and "0 of 400 items changed" in task["method"]
    assert out["half_width"].to_list()[2:] == [0.0] * 3
    row = out.filter(metric="perplexity").row(0, named=True)
    assert qc.format_quality(row) == "0.00% (no change on 16 chunks), equivalent"
    assert qc.format_quality(task) == "0.0 pts (95% CI −0.7…+0.7), equivalent"
    assert qc.labelled(out)["shown"][2] == "0.00% (no change on 16 chunks), equivalent"


def test_a_degraded_variant_is_worse_and_a_small_sample_is_inconclusive():
    rng = np.random.default_rng(1)
    base = rng.random(400) < 0.65
    worse = base & (rng.random(400) > 0.4)  # loses 40% of its right answers: about -26 points
    frame = task_frame({"baseline": base.astype(float).tolist(), "q2": worse.astype(float).tolist()})
    row = qc.quality_comparisons(frame).filter(metric="task_accuracy").row(0, named=True)
    assert row["verdict"] == "worse" and row["ci_high"] < -15 and row["p_value"] < 1e-6
    assert row["change"] == pytest.approx((worse.mean() - base.mean()) * 100)
    # the same loss rate on 12 items: the interval is wide, the verdict says it cannot tell
    small = task_frame({"baseline": [1.0] * 10 + [0.0] * 2, "q2": [1.0] * 9 + [0.0] * 3})
    row = qc.quality_comparisons(small).filter(metric="task_accuracy").row(0, named=True)
    assert row["verdict"] == "inconclusive" and row["half_width"] > 5
    assert row["ci_low"] <= -25 and row["ci_high"] >= 5 and row["p_value"] == 1.0
    low, high, half = qc.signed(row["ci_low"], 1), qc.signed(row["ci_high"], 1), f"{row['half_width']:.1f}"
    assert qc.format_quality(row) == f"−8.3 pts (95% CI {low}…{high}), inconclusive (±{half} pts)"


def test_pairs_by_item_and_point_not_by_row_order():
    """Each point is compared with its own baseline, item by item, whatever order the rows come in."""
    base = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0] * 10
    better = [1.0] * 60
    a = task_frame({"baseline": base, "v": better}, point="p1")
    b = task_frame({"baseline": better, "v": better}, point="p2").sample(fraction=1.0, shuffle=True, seed=2)
    out = qc.quality_comparisons(pl.concat([a, b])).filter(metric="task_accuracy")
    assert out["point_id"].to_list() == ["p1", "p2"]
    assert out["change"].to_list() == pytest.approx([100 * 20 / 60, 0.0])
    assert out["verdict"].to_list() == ["better", "inconclusive"]  # 60 unchanged items bound a change to ±4.5 pts
    assert out["half_width"][1] == pytest.approx(100 * 1.959964 * math.sqrt(2 / 62) / math.sqrt(62))


def test_perplexity_change_matches_the_ratio_of_perplexities():
    rng = np.random.default_rng(5)
    base = rng.normal(4.5, 0.3, 32)
    variant = base + rng.normal(0.03, 0.01, 32)
    row = qc.quality_comparisons(chunk_frame({"baseline": base.tolist(), "q4": variant.tolist()})).row(0, named=True)
    ratio = math.exp(variant.mean()) / math.exp(base.mean())
    assert row["metric"] == "perplexity" and row["unit"] == "pct" and row["n"] == 32
    assert row["change"] == pytest.approx((ratio - 1) * 100)
    assert row["ci_low"] > 2 and row["verdict"] == "worse"


def test_fidelity_shows_kl_as_excess_perplexity_and_agreement_in_points():
    frame = fidelity_frame("kv4", [0.02, 0.03, 0.01, 0.02], [0.95, 0.9, 1.0, 0.95])
    out = qc.quality_comparisons(frame)
    kl = out.filter(metric="kl_mean").row(0, named=True)
    assert kl["change"] == pytest.approx(math.expm1(0.02) * 100) and kl["ci_low"] >= 0
    agreement = out.filter(metric="greedy_agreement").row(0, named=True)
    assert agreement["change"] == pytest.approx(-5.0) and agreement["ci_high"] <= 0 and agreement["n"] == 4


def test_eval_metrics_other_than_exact_match_are_compared_from_their_scores():
    frames = []
    for variant, scores in {"baseline": [1.0, 1.0, 0.0, 1.0], "v": [1.0, 0.0, 0.0, 1.0]}.items():
        rows = [
            {"kind": "task", "request_index": i, "item_id": str(i), "metric": "acc", "score": s}
            for i, s in enumerate(scores)
        ]
        frames.append(store.to_frame(rows, run_id="r", variant=variant, workload_hash="mc"))
    out = qc.quality_comparisons(pl.concat(frames))
    assert out["metric"].to_list() == ["eval_acc"]
    assert out["change"].item() == -25.0 and out["p_value"].item() == 1.0
    # an lm-eval generation task scored by exact match fills `score` only: it is compared, once
    lm_eval = [f.with_columns(metric=pl.lit("exact_match")) for f in frames]
    assert qc.quality_comparisons(pl.concat(lm_eval))["metric"].to_list() == ["eval_exact_match"]
    assert qc.quality_comparisons(task_frame({"baseline": [1.0, 0.0], "v": [1.0, 1.0]}))["metric"].to_list() == [
        "task_accuracy",
        "task_f1",
    ]


def test_overall_verdict_takes_the_worst_headline_metric():
    rows = pl.DataFrame(
        {"point_id": ["p"] * 3, "variant": ["v"] * 3, "metric": ["task_accuracy", "perplexity", "kl_mean"]}
        | {"verdict": ["equivalent", "inconclusive", "worse"]}
    )
    assert qc.overall_verdicts(rows).row(0) == ("p", "v", "inconclusive", "perplexity")  # KL is not a headline
    assert qc.overall_verdicts(rows, metrics=("task_accuracy",)).row(0) == ("p", "v", "equivalent", "task_accuracy")
    assert qc.overall_verdicts(rows, metrics=("eval_acc",)).is_empty()


def test_margins_are_validated_with_one_line():
    assert qc.margins_from({"task_points": 2}).margin("task_accuracy") == 2
    with pytest.raises(ConfigError, match=r"quality_margins.task_pts: unknown margin"):
        qc.margins_from({"task_pts": 2})
    with pytest.raises(ConfigError, match=r"quality_margins.level"):
        qc.margins_from({"level": 2})


def test_no_quality_rows_is_an_empty_frame_with_the_columns():
    assert qc.quality_comparisons(pl.DataFrame(schema=store.SCHEMA)).columns == list(qc.COLUMNS)


def test_real_nano_copy_is_equivalent_and_2_bit_weights_are_not(nano, nano_path):
    """Real MLX on nano: the same weights again (an A/A copy, fidelity against itself) give the same answer on all
    100 items, which establishes equivalence at a 3-point margin (±2.7) but not at 1 point; its perplexity, KL and
    agreement are unchanged (zero width). 2-bit weights move perplexity, KL and agreement beyond their margins."""
    from workbench.measure import evaluate
    from workbench.models import loader
    from workbench.optimise import quantise

    q2 = loader.load(str(quantise.quantised(str(nano_path), bits=2, group_size=64)))
    settings = {"text": "stdlib", "max_chunks": 16, "task": "facts", "task_count": 100, "fidelity_count": 4}
    frames = [
        evaluate.run_eval(model, evaluate.EvalSpec(baseline=reference, variant=name, run_id="r", **settings))[0]
        for name, model, reference in (("baseline", nano, None), ("copy", nano, nano), ("q2", q2, nano))
    ]
    rows = pl.concat(frames)
    out = qc.quality_comparisons(rows, margins=qc.QualityMargins(task_points=3))
    copy = out.filter(variant="copy")
    assert copy["metric"].to_list() == ["task_accuracy", "task_f1", "perplexity", "kl_mean", "greedy_agreement"]
    assert set(copy["verdict"]) == {"equivalent"} and copy["change"].to_list() == [0.0] * 5
    assert copy["half_width"].to_list()[2:] == [0.0] * 3 and 2.5 < copy["half_width"][0] < 3
    strict = qc.quality_comparisons(rows).filter(variant="copy", metric="task_accuracy")
    assert strict["verdict"].item() == "inconclusive"  # 100 unchanged items cannot show a change under 1 point
    q2_rows = {r["metric"]: r for r in out.filter(variant="q2").iter_rows(named=True)}
    assert q2_rows["task_accuracy"]["n"] == 100 and q2_rows["perplexity"]["n"] == 16
    for metric in ("perplexity", "kl_mean", "greedy_agreement"):
        row = q2_rows[metric]
        assert row["verdict"] == "worse", (metric, qc.format_quality(row))
        assert row["ci_low"] < row["change"] < row["ci_high"]
    assert q2_rows["perplexity"]["ci_low"] > 0


def test_quality_margins_come_from_the_slo_file(tmp_path):
    from workbench.analysis import gates

    path = tmp_path / "slo.yaml"
    path.write_text("ttft_s_p90_max: 0.5\nquality_margins:\n  task_points: 2\n  perplexity_pct: 0.5\n")
    assert gates.load_slo(path) == {"ttft_s_p90_max": 0.5}
    margins = gates.load_quality_margins(path)
    assert (margins.task_points, margins.perplexity_pct, margins.kl_pct) == (2.0, 0.5, 1.0)
    assert gates.load_quality_margins(None) == qc.QualityMargins()
    path.write_text("quality_margins:\n  task_pts: 2\n")
    with pytest.raises(ConfigError, match=r"slo.yaml:quality_margins.task_pts"):
        gates.load_slo(path)


def test_the_pareto_front_uses_quality_verdicts_not_point_estimates():
    from workbench.analysis import decisions

    configs = pl.DataFrame(
        {
            "point_id": ["p0", "p1", "p2"],
            "variant": ["baseline", "fast", "noisy"],
            "family": ["baseline", "quantise", "quantise"],
            "is_reference": [True, False, False],
            "ttft_s_p90": [1.0, 0.9, 0.95],
            "throughput_tps": [100.0, 120.0, 110.0],
            "task_accuracy": [0.80, 0.79, 0.81],  # "noisy" leads by a point that its interval cannot tell from zero
        }
    )
    compared = pl.DataFrame(
        {
            "point_id": ["p1", "p2"],
            "variant": ["fast", "noisy"],
            "metric": ["task_accuracy", "task_accuracy"],
            "verdict": ["equivalent", "inconclusive"],
        }
    )
    by_estimate = decisions.with_pareto(configs)
    assert by_estimate.filter("pareto")["variant"].to_list() == ["fast", "noisy"]
    by_verdict = decisions.with_pareto(configs, quality_compared=compared)
    assert by_verdict.filter("pareto")["variant"].to_list() == ["fast"]
    assert by_verdict.columns == by_estimate.columns  # the rank is only the front's axis
