"""Analysis and gates on hand-made rows with known answers: identity read from columns, quality measured or
"not measured", per-trial samples, the A/A noise floor, significance, recommendations, SLOs, regressions."""

import json
import math

import polars as pl
import pytest

from workbench import slo, stats
from workbench.analysis import decisions, gates, per_variant, significance
from workbench.errors import ConfigError
from workbench.results import store

# baseline: even rounds average 100 tok/s, odd rounds 102 -> an A/A change of +2.0 %
BASE = {0: [99, 100, 101], 1: [101, 102, 103], 2: [99, 100, 101], 3: [101, 102, 103]}
OUTPUT = [5, 6, 7]


def speed(run, variant, per_round, *, ttft=0.1, output=OUTPUT, point=None, **identity):
    """Two requests per trial; a trial's throughput is `per_round[round][trial]` tok/s exactly."""
    rows = []
    for rnd, values in per_round.items():
        for trial, tps in enumerate(values):
            for request in range(2):
                rows.append(
                    {
                        "run_id": run,
                        "variant": variant,
                        "kind": "speed",
                        "round": rnd,
                        "trial": trial,
                        "request_index": request,
                        "generated_tokens": 50,
                        "window_s": 100 / tps,
                        "ttft_s": ttft * (1 + 0.01 * request),
                        "e2e_s": 1.0,
                        "decode_tps": float(tps),
                        "peak_mem_bytes": 2**20,
                        "output_tokens": list(output),
                        "params_json": json.dumps({"variant": variant}),
                        **identity,
                    }
                )
    return rows


def quality(run, variant, *, accuracy=None, nll=None, kl=None, **identity):
    rows = []
    if accuracy is not None:
        rows += [
            {"run_id": run, "variant": variant, "kind": "task", "exact_match": float(i < accuracy * 10), **identity}
            for i in range(10)
        ]
    if nll is not None:
        rows += [{"run_id": run, "variant": variant, "kind": "perplexity", "nll_mean": nll, **identity}]
    if kl is not None:
        rows += [
            {
                "run_id": run,
                "variant": variant,
                "kind": "fidelity",
                "kl_mean": kl,
                "greedy_agreement": 0.5,
                "positions": 10,
                **identity,
            }
        ]
    return rows


def frame(*parts) -> pl.DataFrame:
    return store.to_frame([row for part in parts for row in part])


def shifted(per_round, factor):
    return {r: [v * factor for v in values] for r, values in per_round.items()}


BASELINE_ID = {"family": "baseline", "lossless": True, "quality_measured": "perplexity,task", "changes_json": "{}"}


def run_rows(run="r1", base=BASE, **variants):
    parts = [
        speed(run, "baseline", base, **BASELINE_ID),
        quality(run, "baseline", accuracy=0.5, nll=2.0, **BASELINE_ID),
    ]
    for name, (per_round, identity, extra) in variants.items():
        parts.append(speed(run, name, per_round, **{**identity, **extra}))
    return frame(*parts)


def config(configs, variant, run="r1"):
    return configs.filter((pl.col("variant") == variant) & (pl.col("run_id") == run)).row(0, named=True)


def test_identity_is_read_from_columns_never_from_names():
    rows = frame(
        speed("r1", "baseline", BASE, **BASELINE_ID),
        speed("r1", "student-x", BASE, family="speculative", lossless=True, changes_json='{"draft": "s"}'),
        speed("r1", "q4", BASE),  # nothing declared: an older sweep
    )
    configs = per_variant.configurations(rows)
    assert config(configs, "student-x")["family"] == "speculative"
    assert config(configs, "q4")["family"] == "unknown"
    assert config(configs, "baseline")["is_reference"] and config(configs, "baseline")["family"] == "baseline"


def test_quality_is_inherited_only_when_lossless_and_identical():
    lossless = {"family": "batching", "lossless": True, "quality_measured": ""}
    rows = frame(
        speed("r1", "baseline", BASE, **BASELINE_ID),
        quality("r1", "baseline", accuracy=0.5, nll=math.log(20), **BASELINE_ID),
        speed("r1", "b4", BASE, **lossless),
        speed("r1", "b4-differs", BASE, output=[5, 6, 8], **lossless),
        speed("r1", "kv4", BASE, family="kv-quantisation", lossless=False, quality_measured=""),
        speed("r1", "q4", BASE, family="quantisation", lossless=False, quality_measured="perplexity"),
        quality("r1", "q4", accuracy=0.9, nll=math.log(30), family="quantisation", quality_measured="perplexity"),
    )
    configs = per_variant.configurations(rows)
    b4 = config(configs, "b4")
    assert b4["task_accuracy"] == pytest.approx(0.5) and b4["perplexity"] == pytest.approx(20)
    assert b4["kl_mean"] == 0.0 and b4["greedy_agreement"] == 1.0
    assert b4["quality_basis"].startswith("baseline's")
    for name in ("b4-differs", "kv4"):  # outputs differ / not lossless: not measured, not the baseline's
        c = config(configs, name)
        assert c["task_accuracy"] is None and c["perplexity"] is None and c["kl_mean"] is None
        assert c["quality_basis"] == "not measured"
    q4 = config(configs, "q4")  # task rows exist but task was not declared as measured for this variant
    assert q4["perplexity"] == pytest.approx(30) and q4["task_accuracy"] is None
    risks = gates.risks(configs)
    assert risks.filter(pl.col("risk").str.contains("b4-differs (r1): declared lossless", literal=True)).height == 1


def test_trial_samples_are_tokens_over_window_and_trial_medians():
    samples = significance.trial_samples(frame(speed("r1", "baseline", {0: [80, 120]}, ttft=0.2)))
    assert samples["throughput_tps"].to_list() == pytest.approx([80, 120])
    assert samples["ttft_s"].to_list() == pytest.approx([0.201, 0.201])  # median of 0.2 and 0.202


def test_noise_floor_is_the_baselines_even_vs_odd_rounds():
    samples = significance.trial_samples(run_rows())
    floors = significance.noise_floors(samples)
    row = floors.filter(metric="throughput_tps").row(0, named=True)
    assert row["floor_pct"] == pytest.approx(2.0)
    expected = stats.difference([99, 100, 101] * 2, [101, 102, 103] * 2)
    assert (row["ci_low_pct"], row["ci_high_pct"]) == pytest.approx(expected.ci_pct)
    assert significance.sweep_noise_floor(floors)["throughput_tps"] == pytest.approx(
        {"median_pct": 2.0, "max_pct": 2.0, "runs": 1, "aa_copy_max_pct": None, "aa_copies": 0}
    )


def test_significance_needs_interval_and_floor_and_aa_is_never_recommended():
    batching = {"family": "batching", "lossless": True, "quality_measured": "", "changes_json": '{"batch_size": 4}'}
    rows = run_rows(
        b4=(shifted(BASE, 1.2), batching, {}),
        # +1.5 % with almost no spread: the interval excludes zero, but the change is below the 2 % floor
        tiny=({r: [102.4, 102.5, 102.6] for r in BASE}, batching, {"ttft": 0.05}),
        aa=(BASE, {**BASELINE_ID, "quality_measured": ""}, {}),
        # an A/A copy measured 10 % faster: the machine was that noisy, so nothing below 10 % is significant
        aa_fast=(shifted(BASE, 1.1), {**BASELINE_ID, "quality_measured": ""}, {"ttft": 0.01}),
    )
    result = decisions.analyse(rows, slo={"ttft_s_p90_max": 1.0})
    compared = result.compared.filter(metric="throughput_tps")
    tiny = compared.filter(variant="tiny").row(0, named=True)
    assert tiny["ci_low"] > 0 and tiny["floor_pct"] == pytest.approx(10.0) and not tiny["significant"]
    b4 = compared.filter(variant="b4").row(0, named=True)
    assert b4["significant"] and b4["change_pct"] == pytest.approx(20.0) and b4["verdict"] == "better"
    assert not compared.filter(variant="aa").row(0, named=True)["significant"]
    assert not compared.filter(variant="aa_fast").row(0, named=True)["significant"]  # an A/A copy never is
    assert result.recommended["variant"].to_list() == ["b4"]
    statuses = dict(result.candidates.select("variant", "status").iter_rows())
    assert statuses["tiny"] == significance.NO_DIFFERENCE and "aa_fast" not in statuses
    assert set(result.aa_checks["variant"]) == {"aa", "aa_fast"}
    verdict = result.to_json()
    json.dumps(verdict, allow_nan=False)
    (rec,) = verdict["recommendations"]
    assert rec["variant"] == "b4" and rec["significant"] and rec["params"] == {"variant": "b4"}
    assert rec["ci"][0] < rec["change"] < rec["ci"][1] and rec["change_pct"] == pytest.approx(20.0)
    assert verdict["noise_floor"]["known"] and verdict["slo"]["targets"] == {"ttft_s_p90_max": 1.0}


def test_without_round_data_nothing_is_significant():
    batching = {"family": "batching", "lossless": True, "quality_measured": ""}
    rows = run_rows(b4=(shifted(BASE, 1.2), batching, {})).with_columns(pl.lit(None, pl.Int32).alias("round"))
    result = decisions.analyse(rows, slo={})
    assert not result.compared["significant"].any() and result.recommended.is_empty()
    assert not result.floor_known and any("Noise floor unknown" in w for w in result.warnings)
    assert result.candidates.row(0, named=True)["status"] == significance.NO_DIFFERENCE


def test_a_run_uses_the_larger_of_its_floor_and_the_sweep_median():
    batching = {"family": "batching", "lossless": True, "quality_measured": ""}
    noisy = {0: [99, 100, 101], 1: [109, 110, 111], 2: [99, 100, 101], 3: [109, 110, 111]}  # floor 10 %
    five = {r: [v * 1.05 for v in (100.9, 101, 101.1)] for r in BASE}
    rows = pl.concat([run_rows("quiet", b5=(five, batching, {})), run_rows("noisy", base=noisy)])
    floors = significance.noise_floors(significance.trial_samples(rows)).filter(metric="throughput_tps")
    assert sorted(floors["floor_pct"].to_list()) == pytest.approx([2.0, 10.0])
    compared = decisions.analyse(rows, slo={}).compared.filter(metric="throughput_tps", variant="b5")
    assert compared["floor_pct"][0] == pytest.approx(6.0) and not compared["significant"][0]


def test_pareto_mask_keeps_only_undominated_rows():
    df = pl.DataFrame(
        {
            "ttft_s_p90": [1.0, 2.0, 1.0, 3.0, None],
            "throughput_tps": [10.0, 20.0, 5.0, 20.0, 99.0],
            "task_accuracy": [0.5, 0.5, 0.5, 0.4, 0.9],
        }
    )
    objectives = {"ttft_s_p90": False, "throughput_tps": True, "task_accuracy": True}
    assert stats.pareto_mask(df, objectives) == [True, True, False, False, False]


def test_slo_checks_and_rows():
    checks = slo.checks(
        {"ttft_s_p90": 0.5, "throughput_tps": 90.0, "task_accuracy": None},
        {"ttft_s_p90_max": 0.5, "throughput_tps_min": 100, "task_accuracy_min": 0.1},
    )
    assert [c["pass"] for c in checks] == [True, False, False]  # at the bound passes; not measured fails
    batching = {"family": "batching", "lossless": True, "quality_measured": ""}
    rows = pl.concat([run_rows("r1", b4=(shifted(BASE, 1.2), batching, {})), run_rows("r2"), run_rows("r3")])
    result = decisions.analyse(rows, slo={"throughput_tps_min": 110})
    table = gates.slo_rows(result.configs, result.recommended, result.slo)
    assert [r["configuration"] for r in table] == ["baseline (median of 3 runs)", "b4 (r1)"]
    assert [r["pass"] for r in table] == [False, True]
    trials = [v for values in BASE.values() for v in values]  # tokens over summed windows: a harmonic mean
    assert table[0]["value"] == pytest.approx(len(trials) / sum(1 / v for v in trials))


def test_load_slo(tmp_path):
    good = tmp_path / "slo.yaml"
    good.write_text("ttft_s_p90_max: 0.25\ntask_accuracy_min: 0.5\n")
    assert gates.load_slo(good) == {"ttft_s_p90_max": 0.25, "task_accuracy_min": 0.5}
    assert gates.load_slo() == gates.DEFAULT_SLO
    for text in ("speed_max: 1\n", "ttft_s_p90_max: fast\n", "ttft_s_p90_between: 1\n", "- 1\n"):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ConfigError):
            gates.load_slo(tmp_path / "bad.yaml")


def test_regressions_use_intervals_where_trials_exist():
    quant = {"family": "quantisation", "lossless": False, "quality_measured": "perplexity"}

    def sweep(q_factor, spread, nll):
        q = {0: [100 * q_factor - spread, 100 * q_factor, 100 * q_factor + spread]}
        return frame(
            speed("r", "baseline", {0: [99, 100, 101]}, point="p", **BASELINE_ID),
            speed("r", "q", q, **quant),
            quality("r", "q", nll=nll, **quant),
        ).with_columns(pl.lit("p").alias("point_id"))

    previous = sweep(1.0, 1, math.log(10))
    found = gates.regressions(sweep(0.8, 1, math.log(12)), previous)
    flagged = found.filter("regression").select("variant", "metric").rows()
    assert sorted(flagged) == [("q", "decode_tps"), ("q", "perplexity"), ("q", "throughput_tps")]
    thr = found.filter(variant="q", metric="throughput_tps").row(0, named=True)
    assert thr["interval"] and thr["change_pct"] == pytest.approx(-20.0) and thr["matched_by"] == "point_id and variant"
    assert gates.regressions(sweep(0.95, 1, math.log(10)), previous)["regression"].sum() == 0  # within tolerance
    wild = gates.regressions(sweep(0.8, 60, math.log(10)), previous)  # -20 %, but the interval spans zero
    assert not wild.filter(variant="q", metric="throughput_tps")["regression"][0]


def test_latency_quantiles_are_the_linear_percentiles():
    rows = frame(speed("r1", "baseline", {0: [100] * 5}))
    rows = rows.with_columns(ttft_s=pl.int_range(1, rows.height + 1).cast(pl.Float64))
    groups = pl.DataFrame(
        {"run_id": [None], "variant": ["baseline"], "label": ["baseline"]}, schema_overrides={"run_id": pl.String}
    )
    q = decisions.latency_quantiles(rows, groups, points=5)
    assert q["ttft_s"].to_list() == pytest.approx([stats.percentile(range(1, 11), p) for p in (0, 25, 50, 75, 100)])


def test_warnings_flag_overlap_load_dtypes_and_unknown_floor():
    batching = {"family": "batching", "lossless": True, "quality_measured": "", "dtype": "bfloat16"}
    rows = run_rows(b4=(shifted(BASE, 1.2), batching, {})).with_columns(
        dtype=pl.when(pl.col("variant") == "baseline").then(pl.lit("float32")).otherwise(pl.col("dtype"))
    )
    conditions = pl.DataFrame(
        {
            "point_id": ["r1", "r2"],
            "workers": [2, 1],
            "load_before": [1.9, 2.6],  # 1.9 on 2 cores is the previous point's own work; 2.6 is more
            "load_after": [0.2, 0.1],
            "cores": [2, 2],
        }
    )
    warnings = decisions.analyse(rows, slo={}, conditions=conditions).warnings
    assert any("1 of 2 points ran with more than one worker" in w for w in warnings)
    assert any("1 of 2 points started on a busy machine (load up to 1.30 per core" in w for w in warnings)
    assert any("different dtypes (bfloat16, float32)" in w for w in warnings)
    assert not any("Noise floor unknown" in w for w in warnings)
    quiet = pl.DataFrame({"point_id": ["r1"], "workers": [1], "load_before": [0.2], "load_after": [0.3], "cores": [2]})
    assert decisions.analyse(run_rows(), slo={}, conditions=quiet).warnings == []
