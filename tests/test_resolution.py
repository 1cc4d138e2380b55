"""Resolution on real runs of nano (issue 16): a run measured to a precision stops on the interval's width; an
A/A copy is never called better or worse (and equivalent once the interval is narrow); a real ~10% slowdown
(one extra forward pass of the model every 10 decoded tokens, inside mlx-lm's sampling loop, so the slowdown
scales with the machine's load as the model does) is called worse once measured narrowly, and agrees with a
longer reference run measured the same way."""

import mlx.core as mx

from workbench.analysis import verdicts
from workbench.experiments import base, rounds, tradeoff

SMALL = {"prompt_tokens": 16, "gen_tokens": 16, "requests": 4, "trials": 1, "warmup": 1}


def _arms(loaded, every: int = 10) -> list[base.Arm]:
    calls = [0]

    def extra_forward(tokens, logits):
        calls[0] += 1
        if calls[0] % every == 0:
            mx.eval(loaded.model(tokens[-1:][None]))
        return logits

    slowed = base.Variant("slowed", family="test", changes={"extra_forward_every": every})
    return [
        base.Arm(base.baseline_variant(), loaded),
        base.Arm(base.Variant("aa", family="baseline", lossless=True), loaded),
        base.Arm(slowed, loaded, generate_kwargs={"logits_processors": [extra_forward]}),
    ]


def test_precision_run_stops_on_width_and_reports_it(nano_path):
    from workbench.models import loader

    loaded = loader.load(str(nano_path))
    config = tradeoff.Config(model=str(nano_path), precision=0.5, max_rounds=12, **SMALL)
    frame = base.measure_speed(_arms(loaded)[:2], config, run_id="wide")
    speed = frame.filter(kind="speed")
    stopped = set(speed["rounds_stopped"])
    assert stopped <= {rounds.STOP_PRECISION, rounds.STOP_MAX} and speed["round"].n_unique() >= rounds.MIN_ROUNDS
    assert speed["round_wall_s"].min() > 0 and speed["round_load"].null_count() == 0
    assert speed["round_outlier"].null_count() == 0 and (speed["min_effect"] == 0.05).all()
    widths = verdicts.precision_by_variant(verdicts.speed_comparisons(frame))
    if stopped == {rounds.STOP_PRECISION}:
        assert widths["half_width_pct"].max() <= 50.0


def test_aa_is_never_better_or_worse_and_a_real_ten_percent_slowdown_is_worse_and_covered(nano_path):
    from workbench.models import loader

    loaded = loader.load(str(nano_path))
    arms = _arms(loaded)
    short = tradeoff.Config(model=str(nano_path), precision=0.02, max_rounds=40, time_budget_s=40, **SMALL)
    compared = verdicts.speed_comparisons(base.measure_speed(arms, short, run_id="short"))
    reference = tradeoff.Config(model=str(nano_path), rounds=20, **SMALL)
    long = verdicts.speed_comparisons(base.measure_speed(arms, reference, run_id="long"))

    def row(frame, variant):
        return frame.filter(variant=variant, metric="throughput_tps").row(0, named=True)

    aa, slowed, ref = row(compared, "aa"), row(compared, "slowed"), row(long, "slowed")
    print(f"aa {aa['change_pct']:+.1f}% ±{aa['half_width_pct']:.1f}% {aa['label']} ({aa['rounds']} rounds)")
    print(f"slowed {slowed['change_pct']:+.1f}% ±{slowed['half_width_pct']:.1f}% {slowed['label']}")
    print(f"reference {ref['change_pct']:+.1f}% ±{ref['half_width_pct']:.1f}% over {ref['rounds']} rounds")
    assert aa["verdict"] in ("equivalent", "inconclusive"), aa
    if aa["half_width_pct"] <= 2.5:  # narrow enough to say so: the whole interval within +-5 %
        assert aa["verdict"] == "equivalent", aa
    assert slowed["verdict"] in ("worse", "inconclusive"), slowed
    if slowed["half_width_pct"] <= 4.0:
        assert slowed["verdict"] == "worse" and slowed["change_pct"] < 0, slowed
    # the short run's interval covers the reference, allowing for the reference's own interval
    assert abs(slowed["change_pct"] - ref["change_pct"]) <= slowed["half_width_pct"] + ref["half_width_pct"]


def test_round_requests_slices_the_workload_into_short_paired_rounds(nano_path):
    from workbench.models import loader

    loaded = loader.load(str(nano_path))
    config = tradeoff.Config(model=str(nano_path), rounds=6, round_requests=1, **SMALL)
    speed = base.measure_speed(_arms(loaded)[:2], config, run_id="sliced").filter(kind="speed")
    per_round = speed.group_by("variant", "round").agg("request_index").sort("variant", "round")
    assert per_round["request_index"].list.len().to_list() == [1] * 12  # one request per arm per round
    assert per_round.filter(variant="aa")["request_index"].list.first().to_list() == [0, 1, 2, 3, 0, 1]
    assert verdicts.speed_comparisons(speed)["rounds"].to_list() == [6] * 4
