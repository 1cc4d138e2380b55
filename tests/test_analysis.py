"""Analysis and gates on hand-made rows with known answers: identity read from columns, quality measured or
"not measured", per-trial samples, the A/A noise floor, significance, recommendations, SLOs, regressions."""

import json
import math

import polars as pl
import pytest

from workbench import slo, stats
from workbench.analysis import decisions, gates, per_variant, significance, verdicts
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


def test_verdicts_are_paired_by_round_and_an_aa_copy_is_a_check_never_a_recommendation():
    batching = {"family": "batching", "lossless": True, "quality_measured": "", "changes_json": '{"batch_size": 4}'}
    rows = run_rows(
        b4=(shifted(BASE, 1.2), batching, {"ttft": 0.3}),  # +20 % in every round, TTFT three times the baseline's
        # +1.5 % on average, 2.5 % and 0.5 % in alternate rounds: the whole interval lies within +-5 %
        tiny=({r: [102.4, 102.5, 102.6] for r in BASE}, batching, {}),
        aa=(BASE, {**BASELINE_ID, "quality_measured": ""}, {}),
        # an A/A copy measured 10 % faster in every round: the method calls it better, so the check fails
        aa_fast=(shifted(BASE, 1.1), {**BASELINE_ID, "quality_measured": ""}, {}),
    )
    result = decisions.analyse(rows, decisions.Criteria(slo={"ttft_s_p90_max": 1.0}))
    compared = result.compared.filter(metric="throughput_tps")
    b4 = compared.filter(variant="b4").row(0, named=True)
    assert b4["significant"] and b4["change_pct"] == pytest.approx(20.0) and b4["verdict"] == "better"
    assert b4["rounds"] == 4 and b4["half_width_pct"] == pytest.approx(0.0, abs=1e-9)
    tiny = compared.filter(variant="tiny").row(0, named=True)
    assert tiny["change_pct"] == pytest.approx(1.5, abs=0.1) and tiny["ci_low_pct"] < 0 < tiny["ci_high_pct"]
    assert tiny["verdict"] == "equivalent" and tiny["label"] == "equivalent (within ±5%)"
    assert compared.filter(variant="aa").row(0, named=True)["verdict"] == "equivalent"
    assert result.recommended["variant"].to_list() == ["b4"]
    statuses = dict(result.candidates.select("variant", "status").iter_rows())
    assert statuses["tiny"] == "equivalent (within ±5%)" and "aa_fast" not in statuses
    checks = result.aa_checks.filter(metric="throughput_tps")
    assert dict(checks.select("variant", "flagged").iter_rows()) == {"aa": False, "aa_fast": True}
    assert any(w.startswith("A/A check failed: aa_fast [r1]") for w in result.warnings)
    verdict = result.to_json()
    json.dumps(verdict, allow_nan=False)
    (rec,) = verdict["recommendations"]
    assert rec["variant"] == "b4" and rec["significant"] and rec["params"] == {"variant": "b4"}
    assert rec["verdict"] == "better" and rec["half_width_pct"] == pytest.approx(0.0, abs=1e-9)
    assert rec["change_pct"] == pytest.approx(20.0)
    assert [c["metric"] for c in rec["costs"]] == ["ttft_s"] and rec["costs"][0]["change_pct"] == pytest.approx(200.0)
    entry = next(c for c in verdict["comparisons"] if c["variant"] == "tiny" and c["metric"] == "throughput_tps")
    assert set(verdicts.COMPARISON_FIELDS) <= set(entry) and entry["rounds"] == 4 and entry["min_effect_pct"] == 5
    assert not verdict["noise_floor"]["gates_verdicts"] and verdict["slo"]["targets"] == {"ttft_s_p90_max": 1.0}


def test_without_round_data_every_verdict_is_inconclusive():
    batching = {"family": "batching", "lossless": True, "quality_measured": ""}
    rows = run_rows(b4=(shifted(BASE, 1.2), batching, {})).with_columns(pl.lit(None, pl.Int32).alias("round"))
    result = decisions.analyse(rows, decisions.Criteria(slo={}))
    assert result.compared.is_empty() and result.recommended.is_empty()
    assert not result.floor_known and any("no paired interval" in w for w in result.warnings)
    assert result.candidates.row(0, named=True)["status"] == "inconclusive (no interval)"


def test_min_effect_comes_from_the_rows_or_the_slo_file_and_holm_corrects_the_sweep():
    batching = {"family": "batching", "lossless": True, "quality_measured": ""}
    eight = {r: [v * 1.08 for v in values] for r, values in BASE.items()}  # +8 % in every round
    rows = run_rows(b=(eight, batching, {}))
    assert (
        decisions.analyse(rows, decisions.Criteria(slo={})).compared.filter(metric="throughput_tps")["verdict"][0]
        == "better"
    )
    wide = rows.with_columns(min_effect=pl.lit(0.10))  # the run asked for 10 %: +8 % is equivalent
    assert (
        decisions.analyse(wide, decisions.Criteria(slo={})).compared.filter(metric="throughput_tps")["verdict"][0]
        == "equivalent"
    )
    assert decisions.analyse(wide, decisions.Criteria(slo={}, min_effect=0.05)).compared["verdict"][0] == "better"
    frame = pl.DataFrame({"p_value": [0.01, 0.02, 0.04], "ci_low_pct": [6.0] * 3, "ci_high_pct": [20.0] * 3})
    frame = frame.with_columns(metric=pl.lit("throughput_tps"), min_effect_pct=pl.lit(5.0), half_width_pct=pl.lit(7.0))
    for column in set(verdicts.SCHEMA) - set(frame.columns):
        frame = frame.with_columns(pl.lit(None, verdicts.SCHEMA[column]).alias(column))
    judged = verdicts.with_verdicts(frame.select(list(verdicts.SCHEMA)).drop("p_holm", "significant"))
    assert judged["p_holm"].to_list() == pytest.approx([0.03, 0.04, 0.04])
    judged = verdicts.with_verdicts(
        frame.with_columns(p_value=pl.Series([0.01, 0.03, 0.06])).drop("p_holm", "significant")
    )
    assert judged["verdict"].to_list() == ["better", "inconclusive", "inconclusive"]  # Holm: 0.03, 0.06, 0.06


def test_paired_quality_verdicts_are_consumed_when_present():
    batching = {"family": "batching", "lossless": True, "quality_measured": "", "changes_json": '{"batch_size": 4}'}
    result = decisions.analyse(run_rows(b4=(shifted(BASE, 1.2), batching, {})), decisions.Criteria(slo={}))
    quality = pl.DataFrame(
        {"point_id": ["r1", "r1"], "variant": ["b4", "b4"], "metric": ["task_accuracy", "perplexity"]}
    ).with_columns(
        unit=pl.Series(["points", "pct"]),
        change=pl.Series([-10.0, 0.5]),
        ci_low=pl.Series([-21.0, -0.5]),
        ci_high=pl.Series([1.0, 1.5]),
        half_width=pl.Series([11.0, 1.0]),
        n=pl.Series([100, 32]),
        p_value=pl.Series([0.08, 0.3]),
        margin=pl.Series([1.0, 1.0]),
        verdict=pl.Series(["inconclusive", "inconclusive"]),
    )
    pool = decisions.with_quality_verdicts(result.candidates, quality)
    assert pool.filter(variant="b4")["quality_verdict"][0] == "inconclusive"
    entries = verdicts.comparisons_json(result.compared, result.configs, quality)
    task = next(e for e in entries if e["metric"] == "task_accuracy")
    assert task["kind"] == "quality" and task["unit"] == "points" and task["ci_low_pct"] == -21.0
    assert not task["significant"] and task["verdict"] == "inconclusive"
    from workbench.analysis import verdict_risks

    (risk,) = [r for r in verdict_risks.quality_risks(quality) if "Task exact match" in r[0]]
    assert "could be as bad as −21.0 points" in risk[0] and "100 paired items" in risk[1]


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
    result = decisions.analyse(rows, decisions.Criteria(slo={"throughput_tps_min": 110}))
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
    warnings = decisions.analyse(rows, decisions.Criteria(slo={}), conditions=conditions).warnings
    assert any("1 of 2 points ran with more than one worker" in w for w in warnings)
    assert any("1 of 2 points started on a busy machine (load up to 1.30 per core" in w for w in warnings)
    assert any("different dtypes (bfloat16, float32)" in w for w in warnings)
    assert not any("Noise floor unknown" in w for w in warnings)
    quiet = pl.DataFrame({"point_id": ["r1"], "workers": [1], "load_before": [0.2], "load_after": [0.3], "cores": [2]})
    assert decisions.analyse(run_rows(), decisions.Criteria(slo={}), conditions=quiet).warnings == []
